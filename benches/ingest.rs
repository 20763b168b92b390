//! Ingest benchmark: how many signed WhatsApp webhooks per second the real `parley` binary stores
//! durably (answers 200 only after the group-commit flush), and at what latency, next to a bare
//! hyper server that answers 200 to anything (the ceiling for this machine and this client).
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench ingest -- [--concurrency N] [--duration SECS] [--warmup SECS]
//!                                [--rate R] [--connections N] [--only parley|bare]
//!                                [--mode closed|open|both] [--binary PATH]
//! ```
//!
//! Without options: closed loop at c=64 against parley and against the bare server, then open
//! loop at 2000/s against parley, then a summary. The load generator runs on one tokio thread
//! (current-thread runtime) so it uses about one core; the bare server gets its own OS thread
//! with its own one-thread runtime. Bodies are built and signed before the timed window.

mod common;
use common::daemon::Daemon;
use common::{client_runtime, cpu_seconds, flag_pairs, number, percentile, positive, resident_text};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const WHATSAPP_SECRET: &str = "bench-whatsapp-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// Distinct senders the webhooks rotate through, so conversations are created and then updated.
const SENDERS: u64 = 1000;
/// A client gives up on one request after this long and counts it as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Closed-loop bodies are precomputed for up to this many requests per second; past it the
/// remainder is signed on the fly (and the output says how many).
const POOL_RATE_GUESS: u64 = 40_000;
/// Sequence numbers (hence wamids) of the closed- and open-loop phases: far enough apart that the
/// two never meet, so parley stores every webhook of both.
const CLOSED_SEQ_BASE: u64 = 1_000_000_000;
const OPEN_SEQ_BASE: u64 = 2_000_000_000;
/// An open loop that falls this far behind its schedule stops rather than running for ever.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(10);
/// How long the daemon is left alone after the load before its memory is read again.
const SETTLE: Duration = Duration::from_secs(15);

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ingest bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    client_runtime().block_on(run(options));
}

const USAGE: &str = "usage: cargo bench --bench ingest -- [--concurrency N] [--duration SECS] [--warmup SECS] \
[--rate R] [--connections N] [--only parley|bare] [--mode closed|open|both] [--binary PATH]";

/// Which server a phase measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Parley,
    Bare,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Parley => "parley",
            Target::Bare => "bare",
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    rate: u64,
    /// Connections the open loop spreads its schedule over.
    connections: usize,
    only: Option<Target>,
    closed: bool,
    open: bool,
    /// The daemon to run: the release build, or another (an older one) with `--binary`.
    binary: std::path::PathBuf,
}

impl Options {
    /// Hand-rolled parsing: a bench target should not pull in clap, and cargo adds `--bench`.
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            concurrency: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: 2000,
            connections: 64,
            binary: Daemon::release_binary(),
            only: None,
            closed: true,
            open: true,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag.as_str() {
                "--concurrency" => options.concurrency = positive(&flag, &value)?,
                "--duration" => options.duration = Duration::from_secs(positive(&flag, &value)? as u64),
                "--warmup" => options.warmup = Duration::from_secs(number(&flag, &value)? as u64),
                "--rate" => options.rate = positive(&flag, &value)? as u64,
                "--connections" => options.connections = positive(&flag, &value)?,
                "--binary" => options.binary = std::path::PathBuf::from(value),
                "--only" => {
                    options.only = Some(match value.as_str() {
                        "parley" => Target::Parley,
                        "bare" => Target::Bare,
                        other => return Err(format!("--only takes parley or bare, not `{other}`")),
                    })
                }
                "--mode" => {
                    (options.closed, options.open) = match value.as_str() {
                        "closed" => (true, false),
                        "open" => (false, true),
                        "both" => (true, true),
                        other => return Err(format!("--mode takes closed, open or both, not `{other}`")),
                    }
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }

    fn runs(&self, target: Target) -> bool {
        self.only.is_none_or(|only| only == target)
    }
}

/// One line of the final table.
struct SummaryRow {
    label: String,
    stats: Stats,
}

async fn run(options: Options) {
    let warmup_secs = options.warmup.as_secs();
    let secs = options.duration.as_secs();
    println!("Parley ingest benchmark");
    println!(
        "  load generator: 1 tokio thread in this process; bodies are built and signed before the timed window; \
         warm-up {warmup_secs} s, measured {secs} s"
    );
    let daemon = options.runs(Target::Parley).then(|| Daemon::start(&options.binary, bench_config));
    let bare = options.runs(Target::Bare).then(start_bare_server);
    if let Some(daemon) = &daemon {
        println!("  parley: {} (release binary, its own process, tokio default workers + sled threads)", daemon.addr);
        std::thread::sleep(Duration::from_secs(1));
        println!("  parley resident memory, idle after start: {}", resident_text(daemon.pid()));
    }
    if let Some(addr) = bare {
        println!("  bare:   {addr} (hyper http1 in this process, own OS thread, 1-thread runtime, 200 + empty body)");
    }
    let mut summary = Vec::new();
    let mut parley_ok = 0;

    if options.closed {
        let budget = POOL_RATE_GUESS * (warmup_secs + secs);
        let build_started = Instant::now();
        let pool = build_pool(CLOSED_SEQ_BASE, budget);
        println!("\nBuilt and signed {} bodies in {:.1} s.", pool.len(), build_started.elapsed().as_secs_f64());
        println!(
            "\nClosed loop: {} connections, one request at a time each, {warmup_secs} s warm-up + {secs} s",
            options.concurrency
        );
        let mut rates = BTreeMap::new();
        for (target, addr) in [(Target::Parley, daemon.as_ref().map(|d| d.addr)), (Target::Bare, bare)] {
            let Some(addr) = addr else { continue };
            // Parley must never see a wamid twice (it would answer 200 without storing);
            // the bare server does not care, so it may go round the pool.
            let source = Arc::new(WebhookSource::new(pool.clone(), CLOSED_SEQ_BASE, target == Target::Bare));
            let cpu = CpuClock::start(daemon.as_ref().filter(|_| target == Target::Parley).map(Daemon::pid));
            let stats = closed_loop(addr, source.clone(), options.concurrency, options.warmup, options.duration).await;
            let cpu = cpu.stop(options.duration + options.warmup);
            print_stats(target.name(), &stats, options.duration);
            println!("    cpu: {cpu}");
            if source.signed_late() > 0 {
                println!("    note: {} bodies were signed on the fly (pool too small)", source.signed_late());
            }
            if target == Target::Parley {
                parley_ok += stats.ok_total;
            }
            rates.insert(target.name(), stats.rate(options.duration));
            summary.push(SummaryRow { label: format!("{} closed c={}", target.name(), options.concurrency), stats });
        }
        if let (Some(p), Some(b)) = (rates.get("parley"), rates.get("bare")) {
            println!("  ratio parley / bare: {:.3}", p / b);
        }
        if let Some(daemon) = &daemon {
            check_durability(daemon.addr, parley_ok).await;
            println!("  parley resident memory after the closed loop: {}", resident_text(daemon.pid()));
        }
    }

    if options.open {
        // Open loop against parley, or against the bare server when only that one was asked for.
        let (target, addr) = match (&daemon, bare) {
            (Some(daemon), _) => (Target::Parley, daemon.addr),
            (None, Some(addr)) => (Target::Bare, addr),
            (None, None) => unreachable!("at least one target always runs"),
        };
        let count = options.rate * (warmup_secs + secs) + options.rate;
        let pool = build_pool(OPEN_SEQ_BASE, count);
        println!(
            "\nOpen loop: {}/s offered over {} connections, {warmup_secs} s warm-up + {secs} s; latency from the \
             scheduled send time",
            options.rate, options.connections
        );
        let source = Arc::new(WebhookSource::new(pool, OPEN_SEQ_BASE, target == Target::Bare));
        let cpu = CpuClock::start(daemon.as_ref().map(Daemon::pid));
        let stats =
            open_loop(addr, source.clone(), options.rate, options.connections, options.warmup, options.duration).await;
        let cpu = cpu.stop(options.duration + options.warmup);
        print_stats(target.name(), &stats, options.duration);
        println!(
            "    send lag behind schedule (client timer, ~1 ms tokio resolution, or all connections busy): p50 {}  p99 {}  max {}",
            ms(percentile(&stats.lags_ns, 0.50)),
            ms(percentile(&stats.lags_ns, 0.99)),
            ms(stats.lags_ns.last().copied()),
        );
        println!("    cpu: {cpu}");
        if stats.abandoned > 0 {
            println!("    WARNING: {} scheduled requests abandoned: the server fell far behind", stats.abandoned);
        }
        if source.signed_late() > 0 {
            println!("    note: {} bodies were signed on the fly", source.signed_late());
        }
        if target == Target::Parley {
            parley_ok += stats.ok_total;
            check_durability(addr, parley_ok).await;
        }
        if let Some(daemon) = &daemon {
            println!("  parley resident memory after the open loop: {}", resident_text(daemon.pid()));
        }
        summary.push(SummaryRow { label: format!("{} open {}/s", target.name(), options.rate), stats });
    }

    if let Some(daemon) = &daemon {
        // What stays resident once the load has stopped: the daemon checkpoints at a quiet moment
        // (closing and reopening the store drops sled's in-memory bookkeeping for what was written).
        tokio::time::sleep(SETTLE).await;
        let checkpoints = metric_value(daemon.addr, "parley_store_checkpoint_seconds_count").await;
        println!(
            "\nparley resident memory {} s after the load stopped: {} (checkpoints while running: {})",
            SETTLE.as_secs(),
            resident_text(daemon.pid()),
            checkpoints.map_or_else(|| "unknown".to_string(), |n| format!("{n:.0}")),
        );
    }

    println!("\nSummary ({} s measured each)", secs);
    println!("  {:<22} {:>10} {:>9} {:>9} {:>9} {:>8} {:>7}", "run", "200/s", "p50", "p99", "max", "non-200", "errors");
    for row in &summary {
        let s = &row.stats;
        println!(
            "  {:<22} {:>10.0} {:>9} {:>9} {:>9} {:>8} {:>7}",
            row.label,
            s.rate(options.duration),
            ms(percentile(&s.latencies_ns, 0.50)),
            ms(percentile(&s.latencies_ns, 0.99)),
            ms(s.latencies_ns.last().copied()),
            s.non_ok_in_window,
            s.errors,
        );
    }
    if let Some(daemon) = &daemon {
        daemon.print_log_tail(10);
    }
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// One webhook ready to send: the body and its `X-Hub-Signature-256` value.
#[derive(Clone)]
struct SignedWebhook {
    body: Bytes,
    signature: HeaderValue,
}

/// A realistic one-message WhatsApp text webhook (PLATFORMS.md 2.3, like the `text.json` fixture),
/// with a wamid unique to `seq` and a sender from a rotating set, signed with the bench secret.
fn signed_webhook(seq: u64) -> SignedWebhook {
    let sender = 5_511_900_000_000 + seq % SENDERS;
    let name = format!("Bench Customer {}", seq % SENDERS);
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"{name}"}},"wa_id":"{sender}"}}],"messages":[{{"from":"{sender}","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFkJFTkNI{seq:020}AA==","timestamp":"{ts}","type":"text","text":{{"body":"Hi! Did my order #{seq} arrive? It was due yesterday."}}}}]}}}}]}}]}}"#,
        ts = 1_718_000_000 + seq % 100_000,
    );
    let signature = format!("sha256={}", parley::platform::sign_hex(WHATSAPP_SECRET.as_bytes(), &[body.as_bytes()]));
    SignedWebhook {
        body: Bytes::from(body),
        signature: HeaderValue::from_str(&signature).expect("a hex signature is a valid header value"),
    }
}

/// Webhooks `base..base + count`, built and signed now so the timed window does not pay for it.
fn build_pool(base: u64, count: u64) -> Arc<[SignedWebhook]> {
    (base..base + count).map(signed_webhook).collect()
}

/// Hands out webhooks to the connections in order, each once.
struct WebhookSource {
    pool: Arc<[SignedWebhook]>,
    /// The sequence number of `pool[0]`; bodies past the pool continue from there.
    seq_base: u64,
    next: AtomicUsize,
    /// Go round the pool instead of signing more (only where duplicates do not matter).
    wrap: bool,
    signed_late: AtomicU64,
}

impl WebhookSource {
    fn new(pool: Arc<[SignedWebhook]>, seq_base: u64, wrap: bool) -> Self {
        WebhookSource { pool, seq_base, next: AtomicUsize::new(0), wrap, signed_late: AtomicU64::new(0) }
    }

    fn next(&self) -> SignedWebhook {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.pool.get(i) {
            Some(webhook) => webhook.clone(),
            None if self.wrap => self.pool[i % self.pool.len()].clone(),
            None => {
                self.signed_late.fetch_add(1, Ordering::Relaxed);
                signed_webhook(self.seq_base + i as u64)
            }
        }
    }

    fn signed_late(&self) -> u64 {
        self.signed_late.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// One keep-alive HTTP/1.1 connection that reconnects after an error.
struct Connection {
    link: common::keepalive::KeepAlive,
}

/// How one request ended.
enum Answer {
    Status(u16),
    Failed,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Connection { link: common::keepalive::KeepAlive::new(addr) }
    }

    /// Sends one request and reads the whole answer; any failure drops the connection so the next
    /// request starts a fresh one.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Answer {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await {
            Ok(Ok(status)) => Answer::Status(status),
            Ok(Err(_)) | Err(_) => {
                self.link.reset();
                Answer::Failed
            }
        }
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<u16, String> {
        let sender = self.link.connect().await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }

    fn webhook_request(&self, webhook: SignedWebhook) -> Request<Full<Bytes>> {
        Request::builder()
            .method(Method::POST)
            .uri("/webhooks/whatsapp")
            .header(HOST, self.link.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-hub-signature-256", webhook.signature)
            .body(Full::new(webhook.body))
            .expect("a request built from valid parts")
    }

    async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, self.link.host.clone())
            .body(Full::new(Bytes::new()))
            .expect("a request built from valid parts");
        let sender = self.link.connect().await?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// What the connections of one phase saw, merged.
#[derive(Default)]
struct Stats {
    /// Latency of every answer inside the measured window, sorted after merging.
    latencies_ns: Vec<u64>,
    /// Open loop only: how late each measured request left (after its scheduled time).
    lags_ns: Vec<u64>,
    ok_in_window: u64,
    non_ok_in_window: u64,
    /// Every 200 of the phase, warm-up and stragglers included (for the durability check).
    ok_total: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    /// Open loop only: when the last measured request was answered.
    last_done: Option<Instant>,
    window_start: Option<Instant>,
    abandoned: u64,
}

impl Stats {
    fn record(&mut self, answer: &Answer, measured: bool, latency: Duration) {
        match answer {
            Answer::Status(200) => {
                self.ok_total += 1;
                if measured {
                    self.ok_in_window += 1;
                }
            }
            Answer::Status(code) => {
                *self.statuses.entry(*code).or_default() += 1;
                if measured {
                    self.non_ok_in_window += 1;
                }
            }
            Answer::Failed => self.errors += 1,
        }
        if measured && matches!(answer, Answer::Status(_)) {
            self.latencies_ns.push(latency.as_nanos() as u64);
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latencies_ns.extend(other.latencies_ns);
        self.lags_ns.extend(other.lags_ns);
        self.ok_in_window += other.ok_in_window;
        self.non_ok_in_window += other.non_ok_in_window;
        self.ok_total += other.ok_total;
        self.errors += other.errors;
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_default() += n;
        }
        self.last_done = self.last_done.max(other.last_done);
        self.window_start = self.window_start.or(other.window_start);
        self.abandoned += other.abandoned;
    }

    /// 200 answers per second of the measured window. In the open loop the window ends when the
    /// last measured request is answered, so a server that falls behind shows its real rate.
    fn rate(&self, duration: Duration) -> f64 {
        let seconds = match (self.window_start, self.last_done) {
            (Some(start), Some(done)) => done.duration_since(start).as_secs_f64().max(duration.as_secs_f64()),
            _ => duration.as_secs_f64(),
        };
        self.ok_in_window as f64 / seconds
    }
}

/// `concurrency` connections, each sending the next webhook as soon as the previous is answered.
/// Answers that arrive during the warm-up or after the window are not measured.
async fn closed_loop(
    addr: SocketAddr,
    source: Arc<WebhookSource>,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let window_start = Instant::now() + warmup;
    let window_end = window_start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move {
                let mut connection = Connection::new(addr);
                let mut stats = Stats::default();
                while Instant::now() < window_end {
                    let request = connection.webhook_request(source.next());
                    let sent = Instant::now();
                    let answer = connection.send(request).await;
                    let done = Instant::now();
                    stats.record(&answer, done >= window_start && done < window_end, done - sent);
                    if matches!(answer, Answer::Failed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                stats
            })
        })
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(task.await.expect("a load task does not panic"));
    }
    stats.latencies_ns.sort_unstable();
    stats
}

/// `rate` requests per second at fixed intervals from the start; each free connection takes the
/// next slot, waits for its time and sends. Latency runs from the *scheduled* time, so a server
/// that stalls is charged for the requests it delayed (no coordinated omission).
async fn open_loop(
    addr: SocketAddr,
    source: Arc<WebhookSource>,
    rate: u64,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + warmup;
    let end = window_start + duration;
    let slots = Arc::new(AtomicU64::new(0));
    let nanos_per_slot = 1e9 / rate as f64;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (source, slots) = (source.clone(), slots.clone());
            tokio::spawn(async move {
                let mut connection = Connection::new(addr);
                // Connect before the schedule starts so the first slots do not pay for it.
                let _ = connection.link.connect().await;
                let mut stats = Stats { window_start: Some(window_start), ..Stats::default() };
                loop {
                    let slot = slots.fetch_add(1, Ordering::Relaxed);
                    let scheduled = start + Duration::from_nanos((slot as f64 * nanos_per_slot) as u64);
                    if scheduled >= end {
                        break;
                    }
                    if Instant::now() > end + OPEN_LOOP_GRACE {
                        stats.abandoned += 1;
                        continue;
                    }
                    tokio::time::sleep_until(scheduled.into()).await;
                    let request = connection.webhook_request(source.next());
                    let sent = Instant::now();
                    let answer = connection.send(request).await;
                    let done = Instant::now();
                    let measured = scheduled >= window_start;
                    stats.record(&answer, measured, done - scheduled);
                    if measured {
                        stats.lags_ns.push((sent - scheduled).as_nanos() as u64);
                        stats.last_done = stats.last_done.max(Some(done));
                    }
                }
                stats
            })
        })
        .collect();
    let mut stats = Stats { window_start: Some(window_start), ..Stats::default() };
    for task in tasks {
        stats.merge(task.await.expect("a load task does not panic"));
    }
    stats.latencies_ns.sort_unstable();
    stats.lags_ns.sort_unstable();
    stats
}

fn ms(nanos: Option<u64>) -> String {
    match nanos {
        Some(n) => format!("{:.2} ms", n as f64 / 1e6),
        None => "-".into(),
    }
}

fn print_stats(name: &str, stats: &Stats, duration: Duration) {
    println!(
        "  {name:<7} {:>9.0} 200/s   p50 {}   p99 {}   max {}   non-200 {}   errors {}   (200s in window: {})",
        stats.rate(duration),
        ms(percentile(&stats.latencies_ns, 0.50)),
        ms(percentile(&stats.latencies_ns, 0.99)),
        ms(stats.latencies_ns.last().copied()),
        stats.non_ok_in_window,
        stats.errors,
        stats.ok_in_window,
    );
    if !stats.statuses.is_empty() {
        println!("    non-200 statuses over the whole phase: {:?}", stats.statuses);
    }
}

/// Every 200 must be a stored event: compare our count with the daemon's own counter.
/// One unlabelled value from `/metrics`, or None when it cannot be read.
async fn metric_value(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut connection = Connection::new(addr);
    let Ok((200, text)) = connection.get("/metrics").await else { return None };
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn check_durability(addr: SocketAddr, ok_answers: u64) {
    let mut connection = Connection::new(addr);
    let stored = match connection.get("/metrics").await {
        Ok((200, text)) => text.lines().find_map(|line| {
            line.strip_prefix(r#"parley_events_total{platform="whatsapp",outcome="stored"} "#)
                .and_then(|n| n.trim().parse::<u64>().ok())
        }),
        Ok((status, _)) => {
            println!("  durability: WARNING: GET /metrics answered {status}");
            return;
        }
        Err(e) => {
            println!("  durability: WARNING: GET /metrics failed: {e}");
            return;
        }
    };
    match stored {
        Some(stored) if stored == ok_answers => {
            println!(
                "  durability: 200 answers counted {ok_answers}, parley_events_total{{whatsapp,stored}} {stored}: match"
            )
        }
        Some(stored) => println!(
            "  durability: WARNING: 200 answers counted {ok_answers}, but parley_events_total{{whatsapp,stored}} is {stored}"
        ),
        None => println!("  durability: WARNING: /metrics has no parley_events_total for whatsapp"),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// CPU seconds used by this process and by the daemon over a phase, from /proc.
struct CpuClock {
    daemon: Option<u32>,
    own_start: Option<f64>,
    daemon_start: Option<f64>,
}

impl CpuClock {
    fn start(daemon: Option<u32>) -> Self {
        CpuClock {
            daemon,
            own_start: cpu_seconds("self"),
            daemon_start: daemon.and_then(|p| cpu_seconds(&p.to_string())),
        }
    }

    /// "cores used" over `wall`, as text.
    fn stop(self, wall: Duration) -> String {
        let wall = wall.as_secs_f64();
        let own = match (self.own_start, cpu_seconds("self")) {
            (Some(a), Some(b)) => format!("bench process (client + bare server) {:.2} cores", (b - a) / wall),
            _ => "bench process: unknown".into(),
        };
        let daemon = match (self.daemon_start, self.daemon.and_then(|p| cpu_seconds(&p.to_string()))) {
            (Some(a), Some(b)) => format!(", parley {:.2} cores", (b - a) / wall),
            _ => String::new(),
        };
        format!("{own}{daemon} (averaged over warm-up + window)")
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// All four platforms on with bench secrets; `warn` logging except the `Listening.` line we need.
fn bench_config(store: &Path) -> String {
    common::ingest_config(store, WHATSAPP_SECRET, PHONE_NUMBER_ID)
}

/// The ceiling: hyper answering 200 with an empty body to anything, after reading the body, on its
/// own OS thread with a one-thread runtime.
fn start_bare_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the bare server");
    listener.set_nonblocking(true).expect("a socket can be made non-blocking");
    let addr = listener.local_addr().expect("a bound socket has an address");
    std::thread::Builder::new()
        .name("bare-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread tokio runtime can always be built");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("a tokio listener from a std one");
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                                let _ = request.into_body().collect().await;
                                Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .expect("spawn the bare server thread");
    addr
}

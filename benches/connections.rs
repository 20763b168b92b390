//! Connection-abuse benchmark: latency of legitimate signed webhooks to the real `parley` binary
//! while attackers hold connections open, next to the same with no attack.
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench connections -- [--webhooks N] [--rate R] [--idle N] [--slowloris N]
//!                                     [--trickle-ms MS] [--reconnect-ms MS] [--timeout SECS]
//!                                     [--scenario baseline|idle|slowloris|all] [--binary PATH]
//! ```
//!
//! Scenarios, each against the daemon's built-in connection settings (no `[server]` connection
//! keys in its config, so an older binary given with `--binary` runs the same config):
//! - baseline: no attack;
//! - idle: `--idle` connections (default 5,000) held open, half never sending a byte, half kept
//!   alive after one `GET /health`;
//! - slowloris: `--slowloris` connections (default 1,500) that send a request line and then one
//!   header byte every `--trickle-ms` (default 2,000 ms), never finishing their headers.
//!
//! Attackers reconnect `--reconnect-ms` after the server closes them, so the attack stays at its
//! size. They run on their own OS thread and one-thread runtime; the legitimate client runs on
//! another. The legitimate load in each scenario: `--webhooks` signed WhatsApp webhooks at `--rate`
//! per second, each on a fresh connection, then as many on one kept-alive connection. Latency runs
//! from each webhook's scheduled time (so a stalled server is charged for what it delayed); a
//! webhook not answered within `--timeout` counts as failed and sorts above every answered one.

mod common;
use common::daemon::Daemon;
use common::{client_runtime, cpu_seconds, flag_pairs, number, percentile, positive, resident_text};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

const WHATSAPP_SECRET: &str = "bench-whatsapp-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// Descriptors this process needs besides the attack's sockets.
const SPARE_DESCRIPTORS: u64 = 2_000;
/// How long an attack may take to open all its connections before the measurement starts anyway.
const RAMP_LIMIT: Duration = Duration::from_secs(30);
/// Steady state after the ramp, before measuring.
const SETTLE: Duration = Duration::from_secs(3);
/// An attacker's connect attempt gives up after this (a full accept queue drops SYNs).
const ATTACK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: cargo bench --bench connections -- [--webhooks N] [--rate R] [--idle N] \
[--slowloris N] [--trickle-ms MS] [--reconnect-ms MS] [--timeout SECS] [--scenario baseline|idle|slowloris|all] \
[--binary PATH]";

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("connections bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(message) = raise_open_file_limit(options.idle.max(options.slowloris) as u64 + SPARE_DESCRIPTORS) {
        eprintln!("connections bench: {message}");
        std::process::exit(2);
    }
    client_runtime().block_on(run(options));
}

/// What an attack does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    None,
    Idle { connections: usize },
    Slowloris { connections: usize, trickle: Duration },
}

impl Attack {
    fn describe(self, reconnect: Duration) -> String {
        let reconnect = reconnect.as_millis();
        match self {
            Attack::None => "baseline (no attack)".to_owned(),
            Attack::Idle { connections } => format!(
                "{connections} idle connections ({} never send a byte, {} kept alive after one GET /health; each reconnects {reconnect} ms after being closed)",
                connections.div_ceil(2),
                connections / 2
            ),
            Attack::Slowloris { connections, trickle } => format!(
                "{connections}-connection slowloris (request line, then one header byte every {} ms; each reconnects {reconnect} ms after being closed)",
                trickle.as_millis()
            ),
        }
    }

    fn label(self) -> String {
        match self {
            Attack::None => "baseline".to_owned(),
            Attack::Idle { connections } => format!("{connections} idle"),
            Attack::Slowloris { connections, .. } => format!("{connections} slowloris"),
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    webhooks: usize,
    rate: usize,
    idle: usize,
    slowloris: usize,
    trickle: Duration,
    reconnect: Duration,
    timeout: Duration,
    scenarios: Vec<&'static str>,
    binary: PathBuf,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            webhooks: 500,
            rate: 100,
            idle: 5_000,
            slowloris: 1_500,
            trickle: Duration::from_secs(2),
            reconnect: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            scenarios: vec!["baseline", "idle", "slowloris"],
            binary: Daemon::release_binary(),
        };
        for (flag, value) in flag_pairs(args)? {
            match flag.as_str() {
                "--webhooks" => options.webhooks = positive(&flag, &value)?,
                "--rate" => options.rate = positive(&flag, &value)?,
                "--idle" => options.idle = positive(&flag, &value)?,
                "--slowloris" => options.slowloris = positive(&flag, &value)?,
                "--trickle-ms" => options.trickle = Duration::from_millis(positive(&flag, &value)? as u64),
                "--reconnect-ms" => options.reconnect = Duration::from_millis(number(&flag, &value)? as u64),
                "--timeout" => options.timeout = Duration::from_secs(positive(&flag, &value)? as u64),
                "--scenario" => {
                    options.scenarios = match value.as_str() {
                        "baseline" => vec!["baseline"],
                        "idle" => vec!["idle"],
                        "slowloris" => vec!["slowloris"],
                        "all" => vec!["baseline", "idle", "slowloris"],
                        other => {
                            return Err(format!("--scenario takes baseline, idle, slowloris or all, not `{other}`"));
                        }
                    }
                }
                "--binary" => options.binary = PathBuf::from(value),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }

    fn attack(&self, scenario: &str) -> Attack {
        match scenario {
            "idle" => Attack::Idle { connections: self.idle },
            "slowloris" => Attack::Slowloris { connections: self.slowloris, trickle: self.trickle },
            _ => Attack::None,
        }
    }
}

/// Raises this process's soft open-file limit to the hard one; fails if `needed` does not fit.
fn raise_open_file_limit(needed: u64) -> Result<(), String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })
        .map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    match limit.maximum {
        Some(hard) if hard < needed => Err(format!(
            "the attack needs about {needed} open files but the hard limit is {hard}; lower --idle/--slowloris or raise it"
        )),
        _ => Ok(()),
    }
}

/// One scenario's two rows.
struct ScenarioResult {
    attack: Attack,
    fresh: Latencies,
    reused: Latencies,
}

async fn run(options: Options) {
    println!("Parley connections benchmark");
    println!(
        "  legitimate load: {n} signed WhatsApp webhooks at {r}/s, each on a fresh connection, then {n} at {r}/s on one \
         kept-alive connection; latency from each webhook's scheduled time; not answered within {t} s = failed",
        n = options.webhooks,
        r = options.rate,
        t = options.timeout.as_secs()
    );
    let daemon = Daemon::start(&options.binary, bench_config);
    println!(
        "  parley: {} ({}), built-in connection settings (this build: max_connections 1024, header_read_timeout_secs 10, \
         idle_timeout_secs 60)",
        daemon.addr,
        options.binary.display()
    );
    let mut results = Vec::new();
    for (i, scenario) in options.scenarios.iter().enumerate() {
        let attack = options.attack(scenario);
        println!("\nScenario: {}", attack.describe(options.reconnect));
        let attacker = Attacker::start(daemon.addr, attack, options.reconnect);
        attacker.ramp().await;
        let cpu_start = cpu_seconds(&daemon.pid().to_string());
        let phase_start = Instant::now();
        let seq_base = (i as u64 + 1) * 10_000_000;
        let fresh = legitimate_fresh(daemon.addr, &options, seq_base).await;
        print_row("fresh connections", &fresh);
        let reused = legitimate_reused(daemon.addr, &options, seq_base + 5_000_000).await;
        print_row("one reused connection", &reused);
        let cores = match (cpu_start, cpu_seconds(&daemon.pid().to_string())) {
            (Some(a), Some(b)) => format!("{:.2}", (b - a) / phase_start.elapsed().as_secs_f64()),
            _ => "unknown".to_owned(),
        };
        println!(
            "    attack during measurement: {}; parley CPU {cores} cores, RSS {}",
            attacker.report(),
            resident_text(daemon.pid())
        );
        attacker.stop();
        println!("    {}", server_connection_metrics(daemon.addr).await);
        results.push(ScenarioResult { attack, fresh, reused });
        // Let the server see the attackers' sockets close before the next scenario.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    println!("\nSummary ({} webhooks per row, {}/s)", options.webhooks, options.rate);
    println!(
        "  {:<16} {:<11} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "scenario", "connection", "p50", "p99", "max", "200", "failed"
    );
    for result in &results {
        for (kind, latencies) in [("fresh", &result.fresh), ("reused", &result.reused)] {
            println!(
                "  {:<16} {:<11} {:>9} {:>9} {:>9} {:>7} {:>7}",
                result.attack.label(),
                kind,
                ms(percentile(&latencies.sorted_ns, 0.50)),
                ms(percentile(&latencies.sorted_ns, 0.99)),
                ms(latencies.sorted_ns.last().copied()),
                latencies.ok,
                latencies.failed,
            );
        }
    }
    daemon.print_log_tail(6);
}

// ---------------------------------------------------------------------------------------------
// Legitimate load

/// Webhook latencies of one row; a failed webhook is `u64::MAX` so it sorts last.
#[derive(Default)]
struct Latencies {
    sorted_ns: Vec<u64>,
    /// How late this client itself started each webhook (its own scheduling, not the server).
    lag_ns: Vec<u64>,
    /// Fresh connections: connect and handshake, the part the accept queue adds.
    connect_ns: Vec<u64>,
    ok: usize,
    non_ok: usize,
    failed: usize,
}

const FAILED: u64 = u64::MAX;

/// How one webhook went.
struct Outcome {
    /// Status and latency from the scheduled time; `None` when it failed.
    answer: Option<(u16, Duration)>,
    lag: Duration,
    connect: Option<Duration>,
}

impl Latencies {
    fn from_outcomes(outcomes: Vec<Outcome>) -> Latencies {
        let mut latencies = Latencies::default();
        for outcome in outcomes {
            latencies.lag_ns.push(outcome.lag.as_nanos() as u64);
            if let Some(connect) = outcome.connect {
                latencies.connect_ns.push(connect.as_nanos() as u64);
            }
            match outcome.answer {
                Some((status, latency)) => {
                    if status == 200 {
                        latencies.ok += 1;
                    } else {
                        latencies.non_ok += 1;
                    }
                    latencies.sorted_ns.push(latency.as_nanos() as u64);
                }
                None => {
                    latencies.failed += 1;
                    latencies.sorted_ns.push(FAILED);
                }
            }
        }
        latencies.sorted_ns.sort_unstable();
        latencies.lag_ns.sort_unstable();
        latencies.connect_ns.sort_unstable();
        latencies
    }
}

fn ms(nanos: Option<u64>) -> String {
    match nanos {
        Some(FAILED) => "failed".into(),
        Some(n) => format!("{:.2} ms", n as f64 / 1e6),
        None => "-".into(),
    }
}

fn print_row(label: &str, latencies: &Latencies) {
    println!(
        "  {label:<22} p50 {:>9}   p99 {:>9}   max {:>9}   200: {}   other status: {}   failed: {}",
        ms(percentile(&latencies.sorted_ns, 0.50)),
        ms(percentile(&latencies.sorted_ns, 0.99)),
        ms(latencies.sorted_ns.last().copied()),
        latencies.ok,
        latencies.non_ok,
        latencies.failed,
    );
    let connect = if latencies.connect_ns.is_empty() {
        String::new()
    } else {
        format!(
            "; connect p50 {} p99 {} max {}",
            ms(percentile(&latencies.connect_ns, 0.50)),
            ms(percentile(&latencies.connect_ns, 0.99)),
            ms(latencies.connect_ns.last().copied())
        )
    };
    println!(
        "    of which: this client's own start lag p50 {} p99 {} max {}{connect}",
        ms(percentile(&latencies.lag_ns, 0.50)),
        ms(percentile(&latencies.lag_ns, 0.99)),
        ms(latencies.lag_ns.last().copied()),
    );
}

/// A realistic one-message WhatsApp text webhook with a wamid unique to `seq`, and its signature.
fn signed_webhook(seq: u64) -> (Bytes, HeaderValue) {
    let sender = 5_511_900_000_000 + seq % 1000;
    let body = format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"Bench Customer"}},"wa_id":"{sender}"}}],"messages":[{{"from":"{sender}","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFkNPTk4{seq:020}AA==","timestamp":"1718000000","type":"text","text":{{"body":"Is anyone there? Order #{seq}."}}}}]}}}}]}}]}}"#
    );
    let signature = format!("sha256={}", parley::platform::sign_hex(WHATSAPP_SECRET.as_bytes(), &[body.as_bytes()]));
    (Bytes::from(body), HeaderValue::from_str(&signature).expect("a hex signature is a valid header value"))
}

fn webhook_request(addr: SocketAddr, seq: u64) -> Request<Full<Bytes>> {
    let (body, signature) = signed_webhook(seq);
    Request::builder()
        .method(Method::POST)
        .uri("/webhooks/whatsapp")
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header("x-hub-signature-256", signature)
        .body(Full::new(body))
        .expect("a request built from valid parts")
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> Result<u16, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

/// Each webhook on its own connection, at its scheduled time, whatever the earlier ones do.
async fn legitimate_fresh(addr: SocketAddr, options: &Options, seq_base: u64) -> Latencies {
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let timeout = options.timeout;
    let tasks: Vec<_> = (0..options.webhooks)
        .map(|i| {
            let scheduled = start + interval * i as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(scheduled.into()).await;
                let lag = scheduled.elapsed();
                let mut connect_took = None;
                let attempt = async {
                    let began = Instant::now();
                    let mut sender = connect(addr).await?;
                    connect_took = Some(began.elapsed());
                    exchange(&mut sender, webhook_request(addr, seq_base + i as u64)).await
                };
                let answer = match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(status)) => Some((status, scheduled.elapsed())),
                    _ => None,
                };
                Outcome { answer, lag, connect: connect_took }
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a webhook task does not panic"));
    }
    Latencies::from_outcomes(outcomes)
}

/// One kept-alive connection, one webhook at a time at the scheduled times (a late one goes as
/// soon as the previous is answered); after a failure the next webhook opens a new connection.
/// Webhooks still unsent when the schedule is `timeout` past its end count as failed.
async fn legitimate_reused(addr: SocketAddr, options: &Options, seq_base: u64) -> Latencies {
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let give_up = start + interval * options.webhooks as u32 + options.timeout;
    let mut sender = None;
    let mut outcomes = Vec::with_capacity(options.webhooks);
    for i in 0..options.webhooks {
        let scheduled = start + interval * i as u32;
        if Instant::now() > give_up {
            outcomes.push(Outcome { answer: None, lag: scheduled.elapsed(), connect: None });
            continue;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let lag = scheduled.elapsed();
        let attempt = async {
            if sender.is_none() {
                sender = Some(connect(addr).await?);
            }
            exchange(sender.as_mut().expect("connected just above"), webhook_request(addr, seq_base + i as u64)).await
        };
        let answer = match tokio::time::timeout(options.timeout, attempt).await {
            Ok(Ok(status)) => Some((status, scheduled.elapsed())),
            _ => {
                sender = None;
                None
            }
        };
        outcomes.push(Outcome { answer, lag, connect: None });
    }
    Latencies::from_outcomes(outcomes)
}

/// The daemon's own connection counters, as one line (absent on a build without them).
async fn server_connection_metrics(addr: SocketAddr) -> String {
    let attempt = async {
        let mut sender = connect(addr).await?;
        let request = Request::get("/metrics")
            .header(HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .expect("a request built from valid parts");
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>(String::from_utf8_lossy(&body).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(text)) => {
            let series: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with("parley_connections_") && !l.starts_with("parley_connections_max"))
                .map(|l| l.trim_start_matches("parley_connections_").to_owned())
                .collect();
            if series.is_empty() {
                "server counters: none (this build has no parley_connections_* metrics)".to_owned()
            } else {
                format!("server counters after the scenario: {}", series.join(", "))
            }
        }
        Ok(Err(e)) => format!("server counters: GET /metrics failed: {e}"),
        Err(_) => "server counters: GET /metrics not answered within 10 s".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Attackers

/// What the attack's connections did, shared with the measuring side.
#[derive(Default)]
struct AttackCounts {
    /// Attackers that have connected at least once.
    started: AtomicU64,
    open: AtomicU64,
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    connect_failures: AtomicU64,
}

/// An attack running on its own OS thread with its own one-thread runtime.
struct Attacker {
    attack: Attack,
    counts: Arc<AttackCounts>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Counts when the measurement started.
    at_start: Mutex<(u64, u64)>,
}

impl Attacker {
    fn start(addr: SocketAddr, attack: Attack, reconnect: Duration) -> Attacker {
        let counts = Arc::new(AttackCounts::default());
        let (stop, stopped) = watch::channel(false);
        let thread_counts = counts.clone();
        let thread = std::thread::Builder::new()
            .name("attacker".into())
            .spawn(move || {
                client_runtime().block_on(async move {
                    let connections = match attack {
                        Attack::None => 0,
                        Attack::Idle { connections } | Attack::Slowloris { connections, .. } => connections,
                    };
                    let tasks: Vec<_> = (0..connections)
                        .map(|i| {
                            let (counts, mut stopped) = (thread_counts.clone(), stopped.clone());
                            tokio::spawn(async move {
                                tokio::select! {
                                    () = attacker(addr, attack, i, reconnect, &counts) => {}
                                    _ = stopped.wait_for(|stop| *stop) => {}
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            })
            .expect("spawn the attacker thread");
        Attacker { attack, counts, stop, thread: Some(thread), at_start: Mutex::new((0, 0)) }
    }

    /// Waits until every attacker has connected once (or [`RAMP_LIMIT`]), then [`SETTLE`].
    async fn ramp(&self) {
        let wanted = match self.attack {
            Attack::None => return,
            Attack::Idle { connections } | Attack::Slowloris { connections, .. } => connections as u64,
        };
        let began = Instant::now();
        while self.counts.started.load(Ordering::Relaxed) < wanted && began.elapsed() < RAMP_LIMIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = self.counts.started.load(Ordering::Relaxed);
        tokio::time::sleep(SETTLE).await;
        println!(
            "    ramp: {started}/{wanted} attackers connected within {:.1} s; measuring after {} s more",
            began.elapsed().as_secs_f64() - SETTLE.as_secs_f64(),
            SETTLE.as_secs()
        );
        *self.at_start.lock().expect("never poisoned") =
            (self.counts.opened.load(Ordering::Relaxed), self.counts.closed_by_server.load(Ordering::Relaxed));
    }

    fn report(&self) -> String {
        if self.attack == Attack::None {
            return "none".to_owned();
        }
        let (opened_before, closed_before) = *self.at_start.lock().expect("never poisoned");
        format!(
            "{} attacker connections open (client's view) at the end, {} opened and {} closed by the server during it, \
             {} connect attempts failed in all",
            self.counts.open.load(Ordering::Relaxed),
            self.counts.opened.load(Ordering::Relaxed) - opened_before,
            self.counts.closed_by_server.load(Ordering::Relaxed) - closed_before,
            self.counts.connect_failures.load(Ordering::Relaxed),
        )
    }

    fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One attacker connection, reconnecting after the server closes it.
async fn attacker(addr: SocketAddr, attack: Attack, index: usize, reconnect: Duration, counts: &AttackCounts) {
    let mut first = true;
    loop {
        let stream = match tokio::time::timeout(ATTACK_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                counts.connect_failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if first {
            counts.started.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        counts.opened.fetch_add(1, Ordering::Relaxed);
        counts.open.fetch_add(1, Ordering::Relaxed);
        match attack {
            Attack::None => return,
            Attack::Idle { .. } => hold_idle(stream, index % 2 == 1, addr).await,
            Attack::Slowloris { trickle, .. } => slowloris(stream, trickle).await,
        }
        counts.open.fetch_sub(1, Ordering::Relaxed);
        counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(reconnect).await;
    }
}

/// Holds a connection until the server closes it, after one `GET /health` if `kept_alive`.
async fn hold_idle(mut stream: TcpStream, kept_alive: bool, addr: SocketAddr) {
    if kept_alive {
        let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return;
        }
    }
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// A request line, then one header byte per `trickle`, until the server closes the connection.
async fn slowloris(stream: TcpStream, trickle: Duration) {
    let (mut read, mut write) = stream.into_split();
    let trickling = async {
        if write.write_all(b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: bench\r\nX-Slow: ").await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(trickle).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let mut buf = [0u8; 1024];
    let closed = async {
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::select! {
        () = trickling => {}
        () = closed => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// WhatsApp on with the bench secret; no connection keys (the built-in defaults apply).
fn bench_config(store: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
shutdown_grace_secs = 5

[storage]
path = "{store}"

[api]
token = "bench-api-token-7c2e"

[log]
level = "warn,parley::app=info,parley::fdlimit=info"

[whatsapp]
enabled = true
app_secret = "{WHATSAPP_SECRET}"
verify_token = "bench-whatsapp-verify"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "bench-wa-token"
api_base = "http://127.0.0.1:9/v23.0"
"#,
        store = store.display()
    )
}

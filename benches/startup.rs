//! Start-up benchmark: how soon the release daemon answers `/health` and `/ready` on a large store,
//! and how long a SIGTERM takes to stop it.
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench startup -- [--messages N] [--contacts N] [--runs N] [--store DIR]
//!                                 [--checkpoint yes|no]
//! ```
//!
//! Defaults: 1,000,000 WhatsApp text webhooks from 20,000 contacts, 5 runs. The store is built once
//! and reused by later runs of the bench (its directory is named after the size and the schema
//! version; a `.complete` file next to it marks a finished build). It is written through the
//! `Store` API with exactly the records the daemon writes for those webhooks: each body parsed by
//! the WhatsApp module, stored in groups of 16 (`ingest_group`, one atomic batch per group, as
//! the conversation actor stores them under load) and flushed every 4 groups; then, unless
//! `--checkpoint no`, closed and opened again as the daemon does at a clean stop (timed). Then the release
//! binary is started on it `--runs` times: the time from spawn to the first `/health` 200 and the
//! first `/ready` 200, and from SIGTERM to exit, with the medians. When the store was built in the
//! same invocation, run 1 is the first open of a store written in one long session (sled replays
//! all of its log then) and the medians are of the restarts after it. Page cache warm (the store
//! was just built or read); the numbers are wall-clock on whatever else the machine is doing.

#[allow(dead_code)] // the async client helpers serve the other benches
mod common;
use common::{cpu_seconds, flag_pairs, percentile, positive, resident_mib};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parley::model::{Platform, Timestamp};
use parley::platform::{ParseContext, parse_webhook};
use parley::store::{SCHEMA_VERSION, Store};

const PHONE_NUMBER_ID: &str = "106540352242922";
/// Webhooks per atomic write, as the conversation actor groups them while a flush runs.
const GROUP: usize = 16;
/// Groups per flush while building.
const GROUPS_PER_FLUSH: usize = 4;
/// The daemon's default sled cache (`storage.cache_bytes` in `src/config/defaults.toml`) is used
/// to build too, so sled lays the store out as the daemon would.
const BUILD_CACHE_BYTES: u64 = 32 << 20;
/// A run that does not answer within this long is reported as a failure.
const START_DEADLINE: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(5);

const USAGE: &str = "usage: cargo bench --bench startup -- [--messages N] [--contacts N] [--runs N] [--store DIR] [--checkpoint yes|no]";

struct Options {
    messages: usize,
    contacts: usize,
    runs: usize,
    store: Option<PathBuf>,
    /// Leave the freshly built store as a daemon killed without a clean stop would.
    no_checkpoint: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options { messages: 1_000_000, contacts: 20_000, runs: 5, store: None, no_checkpoint: false };
        for (flag, value) in flag_pairs(args)? {
            match flag.as_str() {
                "--messages" => options.messages = positive(&flag, &value)?,
                "--contacts" => options.contacts = positive(&flag, &value)?,
                "--runs" => options.runs = positive(&flag, &value)?,
                "--store" => options.store = Some(PathBuf::from(value)),
                "--checkpoint" => match value.as_str() {
                    "yes" => options.no_checkpoint = false,
                    "no" => options.no_checkpoint = true,
                    _ => return Err(format!("--checkpoint takes yes or no, not `{value}`")),
                },
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }
}

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("startup bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let store = options.store.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("startup-store-{}x{}-schema{SCHEMA_VERSION}", options.messages, options.contacts))
    });
    let complete = store.with_extension("complete");
    let built_now = !complete.exists();
    if built_now {
        build_store(&store, options.messages, options.contacts, !options.no_checkpoint);
        std::fs::write(&complete, b"").expect("mark the store complete");
    } else {
        println!("store: {} (built earlier)", store.display());
    }
    println!(
        "store: {} WhatsApp webhooks from {} contacts, {:.2} GiB on disk",
        options.messages,
        options.contacts,
        dir_bytes(&store) as f64 / (1u64 << 30) as f64
    );

    let dir = tempfile::tempdir().expect("a temporary directory for the config");
    let mut health = Vec::new();
    let mut ready = Vec::new();
    let mut sigterm = Vec::new();
    println!("\n run   /health ms   /ready ms   CPU s to /ready   RSS at /ready   SIGTERM→exit ms   exit code");
    for run in 1..=options.runs {
        let port = free_port();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, bench_config(&store, port)).expect("write the config");
        let started = Instant::now();
        let mut child = spawn(&config);
        let to_health = wait_for(&mut child, port, "/health", started);
        let to_ready = wait_for(&mut child, port, "/ready", started);
        let cpu = cpu_seconds(&child.id().to_string()).map_or_else(|| "?".to_owned(), |s| format!("{s:.2}"));
        let rss =
            resident_mib(&child.id().to_string()).map_or_else(|| "?".to_owned(), |(now, _)| format!("{now:.1} MiB"));
        let stopping = Instant::now();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let code = wait_exit(&mut child);
        let to_exit = stopping.elapsed();
        println!(
            " {run:>3}   {:>10.0}   {:>9.0}   {cpu:>15}   {rss:>13}   {:>15.0}   {code}",
            ms(to_health),
            ms(to_ready),
            ms(to_exit)
        );
        health.push(to_health);
        ready.push(to_ready);
        sigterm.push(to_exit);
    }
    if built_now {
        println!(
            "\nrun 1 is the first open since the store was written{}: sled 0.34 writes its snapshot only when it \
             opens, so an open replays the log written since the previous one",
            if options.no_checkpoint {
                " without a checkpoint (here it replays all of it)"
            } else {
                " and checkpointed"
            }
        );
    }
    let restarts = if built_now && options.runs > 1 { 1 } else { 0 };
    let median = |list: &[Duration]| {
        let mut list = list[restarts..].to_vec();
        list.sort();
        ms(percentile(&list, 0.5).expect("at least one run"))
    };
    println!(
        "\nmedian of {} runs{}: first /health 200 after {:.0} ms, first /ready 200 after {:.0} ms, SIGTERM to exit {:.0} ms",
        options.runs - restarts,
        if restarts == 1 { " (2 and later: restarts)" } else { "" },
        median(&health),
        median(&ready),
        median(&sigterm)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes the store: `messages` webhooks, the sender of each one of `contacts`.
/// With `checkpoint`, closes and reopens it at the end as the daemon's clean stop would.
fn build_store(path: &Path, messages: usize, contacts: usize, checkpoint: bool) {
    if path.exists() {
        std::fs::remove_dir_all(path).expect("remove an unfinished store");
    }
    println!("building the store at {} (once; later runs reuse it)...", path.display());
    let started = Instant::now();
    let store = Store::open(path, BUILD_CACHE_BYTES).expect("open the bench store");
    let mut seq = 0;
    let mut groups = 0;
    while seq < messages {
        let end = (seq + GROUP).min(messages);
        let received_at = Timestamp::from_millis(1_700_000_000_000 + seq as i64 * 3_000);
        let ctx = ParseContext { account_id: PHONE_NUMBER_ID, received_at };
        let bodies: Vec<Vec<_>> = (seq..end)
            .map(|i| parse_webhook(Platform::Whatsapp, webhook(i, contacts).as_bytes(), &ctx).expect("a valid body"))
            .collect();
        let group: Vec<&[_]> = bodies.iter().map(Vec::as_slice).collect();
        let outcomes = store.ingest_group(&group, received_at).expect("store a group");
        assert!(outcomes.iter().all(|o| o.messages == 1), "every webhook is one new message");
        groups += 1;
        if groups % GROUPS_PER_FLUSH == 0 {
            store.flush_blocking().expect("flush");
        }
        seq = end;
        if seq % 100_000 == 0 {
            println!("  {seq} webhooks stored, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    store.flush_blocking().expect("flush");
    println!("built in {:.0} s", started.elapsed().as_secs_f64());
    if checkpoint {
        // What the daemon does at a clean stop after writing this much without a quiet moment (a
        // daemon with quiet moments has checkpointed on its own meanwhile).
        let started = Instant::now();
        let store = store.checkpoint(Duration::from_secs(10)).expect("checkpoint the store");
        drop(store);
        println!(
            "checkpoint of the freshly written store (as the daemon's SIGTERM does): {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// A realistic one-message WhatsApp text webhook (like the ingest bench's), unique wamid per `seq`.
fn webhook(seq: usize, contacts: usize) -> String {
    let contact = seq % contacts;
    let sender = 5_511_900_000_000u64 + contact as u64;
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{{"profile":{{"name":"Customer {contact}"}},"wa_id":"{sender}"}}],"messages":[{{"from":"{sender}","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFlNUQVJU{seq:020}AA==","timestamp":"{ts}","type":"text","text":{{"body":"Hi! Did my order #{seq} arrive? It was due yesterday."}}}}]}}}}]}}]}}"#,
        ts = 1_700_000_000 + seq * 3,
    )
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound socket has an address").port()
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the parley binary")
}

/// Polls `path` until it answers 200; the time since `started`.
fn wait_for(child: &mut Child, port: u16, path: &str, started: Instant) -> Duration {
    loop {
        if get_status(port, path) == Some(200) {
            return started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("parley exited ({status}) before {path} answered 200");
        }
        assert!(started.elapsed() < START_DEADLINE, "{path} did not answer 200 within {START_DEADLINE:?}");
        std::thread::sleep(POLL_EVERY);
    }
}

fn get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn wait_exit(child: &mut Child) -> String {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code().map_or_else(|| status.to_string(), |c| c.to_string());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return "killed: no exit within the deadline".into();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// All four platforms on (as in production), platform APIs unreachable (no sending needed).
fn bench_config(store: &Path, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[storage]
path = "{store}"

[api]
token = "bench-api-token-7c2e"

[log]
level = "warn"

{platforms}"#,
        store = store.display(),
        platforms = common::offline_platforms("bench-whatsapp-app-secret", PHONE_NUMBER_ID),
    )
}

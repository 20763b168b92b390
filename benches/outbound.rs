//! Outbound benchmark: how fast the real `parley` binary turns API replies into platform sends, and
//! how closely its pacing meets the configured rate limits, against the real `parley sandbox`
//! (which checks every send as the platform would, keeps a journal of them, and posts signed
//! delivery and read receipts back to the daemon).
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench outbound -- [--only throughput|accuracy] [--count N] [--conversations N]
//!                                  [--concurrency N] [--in-flight N] [--seconds S]
//!                                  [--facebook-rate R] [--whatsapp-rate R]
//! ```
//!
//! Throughput: rate limits lifted in the daemon (every platform's rate key at 1,000,000) and in the
//! sandbox (`--no-rate-limits`). `--conversations` Messenger customers write first (signed
//! webhooks, outside the timed window); then `--count` replies, spread round-robin over their
//! conversations, are posted to `POST /api/conversations/{id}/messages` by `--concurrency`
//! concurrent API clients. The clock runs from the first API call until the daemon's
//! `parley_messages_sent_total` reaches the count (polled every 20 ms). Per-reply latency runs from
//! the API call to the send request's arrival at the sandbox (its journal's `at_ms`).
//!
//! Accuracy: a second daemon and sandbox with the limits enforced (Messenger `--facebook-rate`/s,
//! WhatsApp `--whatsapp-rate`/s, the shipped `outbound.max_in_flight`). Enough messages for
//! `--seconds` of sending on each platform are queued at once through `POST /api/messages`
//! (Messenger to 50 PSIDs, WhatsApp each to its own number so the per-recipient pair limit never
//! binds); both channels then drain together. From the journal: achieved rate over configured,
//! the most sends in any sliding 1-second window, and every answer the sandbox gave (its debug log).
//!
//! The client runs on one tokio thread in this process. Exit 0 when everything ran and every limit
//! held; 1 on an unexpected answer, a process that would not start, or a limit exceeded.

mod common;
use common::{client_runtime, cpu_seconds, flag_pairs, percentile, positive, resident_text};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::task::{JoinHandle, JoinSet};

const API_TOKEN: &str = "bench-api-token-7c2e";
const FACEBOOK_SECRET: &str = "bench-facebook-app-secret";
const PAGE_ID: &str = "104857600123456";
const PHONE_NUMBER_ID: &str = "106540352242922";
/// "No limit" for the throughput phase: every platform's rate key, per second or per minute.
const LIFTED_RATE: u32 = 1_000_000;
/// The shipped `outbound.max_in_flight`, used by the accuracy phase.
const SHIPPED_IN_FLIGHT: u32 = 8;
/// Messenger PSIDs the accuracy phase writes to.
const ACCURACY_PSIDS: usize = 50;
/// How often the daemon's send counters are read while waiting.
const METRICS_POLL: Duration = Duration::from_millis(20);
/// How often the sandbox journal is read while waiting (it keeps only the last 50,000 requests).
const JOURNAL_POLL: Duration = Duration::from_millis(500);
/// Waiting ends in an error when no message is sent for this long.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// Log lines kept per process for error reports (the rest are counted only).
const LOG_LINES_KEPT: usize = 200;

type BenchResult<T> = Result<T, String>;

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("outbound bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    match client_runtime().block_on(run(options)) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("\noutbound bench: a configured limit was not respected (see above)");
            std::process::exit(1);
        }
        Err(message) => {
            eprintln!("\noutbound bench: error: {message}");
            std::process::exit(1);
        }
    }
}

const USAGE: &str = "usage: cargo bench --bench outbound -- [--only throughput|accuracy] [--count N] \
[--conversations N] [--concurrency N] [--in-flight N] [--seconds S] [--facebook-rate R] [--whatsapp-rate R]";

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    throughput: bool,
    accuracy: bool,
    /// Throughput: replies to post.
    count: usize,
    /// Throughput: conversations the replies are spread over.
    conversations: usize,
    /// API requests the client keeps in flight.
    concurrency: usize,
    /// Throughput: the daemon's `outbound.max_in_flight`.
    in_flight: u32,
    /// Accuracy: seconds of sending queued on each platform.
    seconds: u32,
    facebook_rate: u32,
    whatsapp_rate: u32,
}

impl Options {
    /// Hand-rolled parsing: a bench target should not pull in clap, and cargo adds `--bench`.
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            throughput: true,
            accuracy: true,
            count: 3000,
            conversations: 200,
            concurrency: 32,
            in_flight: 64,
            seconds: 15,
            facebook_rate: 40,
            whatsapp_rate: 80,
        };
        for (flag, value) in flag_pairs(args)? {
            match flag.as_str() {
                "--only" => {
                    (options.throughput, options.accuracy) = match value.as_str() {
                        "throughput" => (true, false),
                        "accuracy" => (false, true),
                        other => return Err(format!("--only takes throughput or accuracy, not `{other}`")),
                    }
                }
                "--count" => options.count = positive(&flag, &value)?,
                "--conversations" => options.conversations = positive(&flag, &value)?,
                "--concurrency" => options.concurrency = positive(&flag, &value)?,
                "--in-flight" => options.in_flight = small(&flag, positive(&flag, &value)?)?,
                "--seconds" => options.seconds = small(&flag, positive(&flag, &value)?)?,
                "--facebook-rate" => options.facebook_rate = small(&flag, positive(&flag, &value)?)?,
                "--whatsapp-rate" => options.whatsapp_rate = small(&flag, positive(&flag, &value)?)?,
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(options)
    }
}

fn small(flag: &str, n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{flag} is too large"))
}

async fn run(options: Options) -> BenchResult<bool> {
    println!("Parley outbound benchmark");
    println!(
        "  client: 1 tokio thread in this process, {} API requests in flight; daemon and sandbox are the release \
         binary, each its own process; the sandbox posts receipts back (delivery 200 ms, read 600 ms after a send)",
        options.concurrency
    );
    let mut limits_held = true;
    if options.throughput {
        throughput(&options).await?;
    }
    if options.accuracy {
        limits_held = accuracy(&options).await?;
    }
    Ok(limits_held)
}

// ---------------------------------------------------------------------------------------------
// Throughput

async fn throughput(options: &Options) -> BenchResult<()> {
    let count = options.count;
    println!("\nThroughput with rate limits lifted");
    let rig = Rig::start(RigSettings {
        facebook_rate: LIFTED_RATE,
        whatsapp_rate: LIFTED_RATE,
        per_minute_rate: Some(LIFTED_RATE),
        max_in_flight: options.in_flight,
        max_queued: count.saturating_mul(2).max(100_000),
        sandbox_rate_limits: false,
        log_answers: false,
    })
    .await?;
    println!(
        "  daemon {}: every rate key {LIFTED_RATE}, outbound.max_in_flight {}; sandbox {} with --no-rate-limits",
        rig.api.daemon, options.in_flight, rig.api.sandbox
    );
    let result = throughput_on(&rig, options).await;
    rig.print_daemon_warnings();
    result.map_err(|e| rig.explain(e))
}

async fn throughput_on(rig: &Rig, options: &Options) -> BenchResult<()> {
    let api = &rig.api;
    let (count, concurrency) = (options.count, options.concurrency);

    // Customers write first, so every reply goes to a conversation that exists (as in real use).
    let setup = Instant::now();
    let webhooks = concurrently(options.conversations, concurrency, {
        let api = api.clone();
        move |i| {
            let api = api.clone();
            async move { api.post_messenger_webhook(i).await }
        }
    })
    .await?;
    webhooks.into_iter().collect::<BenchResult<Vec<()>>>()?;
    let conversations = api.conversation_ids("facebook").await?;
    if conversations.len() != options.conversations {
        return Err(format!(
            "{} Messenger webhooks were stored, but the API lists {} facebook conversations",
            options.conversations,
            conversations.len()
        ));
    }
    println!(
        "  setup: {} Messenger conversations from signed webhooks in {:.2} s (not timed)",
        conversations.len(),
        setup.elapsed().as_secs_f64()
    );

    let jobs: Vec<Job> = (0..count)
        .map(|i| Job {
            platform: 0,
            path: format!("/api/conversations/{}/messages", conversations[i % conversations.len()]),
            body: json!({ "text": format!("Reply {i}: your order ships tomorrow, tracking follows by email.") }),
        })
        .collect();
    let mut watches = vec![Watch::new(api, "facebook", count).await?];
    let cpu = CpuClock::start(&[rig.daemon.pid(), rig.sandbox.pid()]);
    let started = Instant::now();
    let enqueue = tokio::spawn(enqueue_all(api.clone(), jobs, concurrency));
    let attempts = wait_for_sends(api, &mut watches, enqueue).await?;
    let watch = &watches[0];
    let all_sent = watch.done_at.unwrap_or_else(Instant::now);
    let cpu = cpu.stop(all_sent - started);
    let accepted = accepted(&attempts);

    println!("  {count} replies over {} conversations, {concurrency} concurrent API clients", conversations.len());
    let first_call = attempts.iter().map(|a| a.started).min().unwrap_or(started);
    let last_answer = attempts.iter().map(|a| a.answered).max().unwrap_or(started);
    let enqueue_secs = (last_answer - first_call).as_secs_f64();
    let mut call_ms: Vec<f64> = attempts.iter().map(|a| (a.answered - a.started).as_secs_f64() * 1e3).collect();
    sort(&mut call_ms);
    println!(
        "  API enqueue:  {} × 202 in {enqueue_secs:.2} s = {:.0} /s   POST→202 p50 {}  p99 {}  max {}",
        accepted.len(),
        accepted.len() as f64 / enqueue_secs,
        ms(percentile(&call_ms, 0.50)),
        ms(percentile(&call_ms, 0.99)),
        ms(call_ms.last().copied()),
    );
    let e2e_secs = (all_sent - first_call).as_secs_f64();
    println!(
        "  end to end:   first API call → all {count} sent (parley_messages_sent_total, polled every 20 ms) in \
         {e2e_secs:.2} s = {:.0} replies/s",
        count as f64 / e2e_secs
    );
    let report = JournalReport::new(&watch.sends, &accepted);
    report.print_sends("sandbox:     ");
    println!(
        "  API call → send request at the sandbox: p50 {}  p90 {}  p99 {}  max {}  (journal at_ms, 1 ms resolution)",
        ms(percentile(&report.latencies_ms, 0.50)),
        ms(percentile(&report.latencies_ms, 0.90)),
        ms(percentile(&report.latencies_ms, 0.99)),
        ms(report.latencies_ms.last().copied()),
    );
    let statuses = final_statuses(api, accepted.keys().cloned().collect(), concurrency).await?;
    let counters = api.metrics().await?;
    println!("  statuses via GET /api/messages/{{id}}: {}", tally_text(&statuses));
    println!(
        "  daemon counters: sent {}, failed {}, retries {}",
        counter(&counters, "parley_messages_sent_total", "facebook"),
        counter(&counters, "parley_messages_failed_total", "facebook"),
        counter(&counters, "parley_send_retries_total", "facebook"),
    );
    println!("  receipts: {}", api.receipt_stats().await?);
    println!("  cpu: {cpu}");
    println!("  daemon resident memory: {}", resident_text(rig.daemon.pid()));
    check_all_sent(&statuses, accepted.len())?;
    if report.missing > 0 {
        return Err(format!("{} accepted replies never reached the sandbox journal", report.missing));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accuracy

async fn accuracy(options: &Options) -> BenchResult<bool> {
    let (fb_rate, wa_rate, seconds) = (options.facebook_rate, options.whatsapp_rate, options.seconds);
    println!(
        "\nRate accuracy at the configured limits: {seconds} s of sends queued per platform, both channels at once"
    );
    let rig = Rig::start(RigSettings {
        facebook_rate: fb_rate,
        whatsapp_rate: wa_rate,
        per_minute_rate: None,
        max_in_flight: SHIPPED_IN_FLIGHT,
        max_queued: 100_000,
        sandbox_rate_limits: true,
        log_answers: true,
    })
    .await?;
    println!(
        "  daemon {}: facebook.rate_per_second {fb_rate}, whatsapp.rate_per_second {wa_rate}, outbound.max_in_flight \
         {SHIPPED_IN_FLIGHT}; sandbox {} enforcing the same limits",
        rig.api.daemon, rig.api.sandbox
    );
    let result = accuracy_on(&rig, options).await;
    rig.print_daemon_warnings();
    result.map_err(|e| rig.explain(e))
}

async fn accuracy_on(rig: &Rig, options: &Options) -> BenchResult<bool> {
    let api = &rig.api;
    let limits = [("facebook", options.facebook_rate), ("whatsapp", options.whatsapp_rate)];
    let counts: Vec<usize> = limits.iter().map(|(_, rate)| *rate as usize * options.seconds as usize).collect();
    // The Messenger customers write first (their 24-hour window opens); the WhatsApp numbers
    // never wrote, so what goes to them is a template, as WhatsApp requires.
    for i in 0..ACCURACY_PSIDS {
        api.post_messenger_webhook(i).await?;
    }
    // Interleave the two platforms so both queues fill from the first moment.
    let mut keyed: Vec<(f64, Job)> = Vec::new();
    for (k, &n) in counts.iter().enumerate() {
        for j in 0..n {
            let body = match k {
                0 => json!({ "platform": "facebook", "to": psid(j % ACCURACY_PSIDS),
                    "text": format!("Update {j}: your parcel left the depot.") }),
                _ => json!({ "platform": "whatsapp", "to": format!("+55 11 9{:08}", j),
                    "template": { "name": "parcel_update", "language": "pt_BR", "components": [
                        { "type": "body", "parameters": [{ "type": "text", "text": format!("{j}") }] }] } }),
            };
            keyed.push(((j as f64 + 0.5) / n as f64, Job { platform: k, path: "/api/messages".into(), body }));
        }
    }
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let jobs: Vec<Job> = keyed.into_iter().map(|(_, job)| job).collect();

    let mut watches = Vec::new();
    for ((platform, _), &n) in limits.iter().zip(&counts) {
        watches.push(Watch::new(api, platform, n).await?);
    }
    let started = Instant::now();
    let enqueue = tokio::spawn(enqueue_all(api.clone(), jobs, options.concurrency));
    let attempts = wait_for_sends(api, &mut watches, enqueue).await?;
    let last_answer = attempts.iter().map(|a| a.answered).max().unwrap_or(started);
    println!(
        "  queued {} Messenger messages to {ACCURACY_PSIDS} PSIDs and {} WhatsApp templates to as many numbers in {:.2} s, \
         ahead of ~{} s of sending at the limits",
        counts[0],
        counts[1],
        (last_answer - started).as_secs_f64(),
        options.seconds
    );
    let counters = api.metrics().await?;
    // The sandbox logs each answer just before writing it; give the log reader a moment to catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = rig.sandbox.answers();
    println!(
        "\n  {:<9} {:>7} {:>6} {:>11} {:>10} {:>7} {:>11} {:>6} {:>8}  verdict",
        "platform", "limit", "sends", "first→last", "achieved", "ratio", "max in 1 s", "429s", "retries"
    );
    let mut held = true;
    let mut sandbox_answers = Vec::new();
    for ((watch, (platform, rate)), k) in watches.iter().zip(limits).zip(0..) {
        let ids: HashMap<String, Attempt> =
            accepted(&attempts).into_iter().filter(|(_, a)| a.platform == k).map(|(id, a)| (id, a.clone())).collect();
        let report = JournalReport::new(&watch.sends, &ids);
        let mut times: Vec<i64> = watch.sends.iter().map(|s| s.at_ms).collect();
        times.sort_unstable();
        let span_ms = match (times.first(), times.last()) {
            (Some(first), Some(last)) => (last - first) as f64,
            _ => 0.0,
        };
        let achieved = if span_ms > 0.0 { (times.len() - 1) as f64 / (span_ms / 1e3) } else { 0.0 };
        let ratio = achieved / f64::from(rate);
        let max_window = max_in_window(&times, 1000);
        let throttled = answers.get(&(platform.to_owned(), 429)).copied().unwrap_or(0);
        let retries = counter(&counters, "parley_send_retries_total", platform);
        let ok = max_window <= rate as usize && throttled == 0 && retries == 0 && report.extra_attempts == 0;
        held &= ok;
        println!(
            "  {platform:<9} {:>7} {:>6} {:>9.2} s {:>8.2}/s {ratio:>7.3} {max_window:>11} {throttled:>6} {retries:>8}  {}",
            format!("{rate}/s"),
            times.len(),
            span_ms / 1e3,
            achieved,
            if ok { "ok" } else { "LIMIT NOT RESPECTED" },
        );
        let statuses: Vec<String> = answers
            .iter()
            .filter(|((p, _), _)| p == platform)
            .map(|((_, status), n)| format!("{n} × {status}"))
            .collect();
        sandbox_answers
            .push(format!("{platform} {}", if statuses.is_empty() { "none".into() } else { statuses.join(", ") }));
        if report.missing > 0 || report.extra_attempts > 0 {
            println!(
                "    {platform}: {} accepted messages missing from the journal, {} extra attempts",
                report.missing, report.extra_attempts
            );
        }
    }
    println!(
        "  ratio = (sends - 1) / (last - first) / limit (the channels pace at {:.3} of a per-second limit, leaving \
         {} ms for arrival jitter); max in 1 s = most sends in any sliding 1000 ms window of the journal's at_ms \
         (must not exceed the limit)",
        parley::ratelimit::pacing_share(Duration::from_secs(1)),
        parley::ratelimit::arrival_guard(Duration::from_secs(1)).as_millis()
    );
    println!(
        "  sandbox answers to the daemon's requests (its debug log, token checks included): {}",
        sandbox_answers.join("; ")
    );
    let statuses = final_statuses(api, accepted(&attempts).keys().cloned().collect(), options.concurrency).await?;
    println!("  statuses via GET /api/messages/{{id}}: {}", tally_text(&statuses));
    println!("  receipts: {}", api.receipt_stats().await?);
    check_all_sent(&statuses, accepted(&attempts).len())?;
    Ok(held)
}

/// The most entries of sorted `times` (ms) inside any window `[t, t + width)`.
fn max_in_window(times: &[i64], width: i64) -> usize {
    let mut best = 0;
    let mut end = 0;
    for (start, &t) in times.iter().enumerate() {
        while end < times.len() && times[end] < t + width {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Sending and waiting

/// One API call to make.
struct Job {
    /// Index into the phase's platform list.
    platform: usize,
    path: String,
    body: Value,
}

/// How one API call went.
#[derive(Clone)]
struct Attempt {
    platform: usize,
    started: Instant,
    /// `started` as milliseconds since the Unix epoch, to compare with the sandbox's `at_ms`.
    started_epoch_ms: f64,
    answered: Instant,
    /// Our message id on a 202; otherwise why not.
    outcome: Result<String, String>,
}

/// Posts every job with `concurrency` requests in flight.
async fn enqueue_all(api: Api, jobs: Vec<Job>, concurrency: usize) -> BenchResult<Vec<Attempt>> {
    let jobs = Arc::new(jobs);
    let count = jobs.len();
    concurrently(count, concurrency, move |i| {
        let (api, jobs) = (api.clone(), jobs.clone());
        async move {
            let job = &jobs[i];
            let started_epoch_ms = epoch_ms();
            let started = Instant::now();
            let answer = api.post_json(&api.daemon_url(&job.path), &job.body, true).await;
            let answered = Instant::now();
            let outcome = match answer {
                Ok((202, body)) => match body["message"]["id"].as_str() {
                    Some(id) => Ok(id.to_owned()),
                    None => Err(format!("202 without message.id: {}", snippet(&body.to_string()))),
                },
                Ok((status, body)) => Err(format!("{} answered {status}: {}", job.path, snippet(&body.to_string()))),
                Err(e) => Err(e),
            };
            Attempt { platform: job.platform, started, started_epoch_ms, answered, outcome }
        }
    })
    .await
}

/// The accepted attempts by message id.
fn accepted(attempts: &[Attempt]) -> HashMap<String, Attempt> {
    attempts.iter().filter_map(|a| a.outcome.as_ref().ok().map(|id| (id.clone(), a.clone()))).collect()
}

/// One platform's progress: the daemon's counters and the sandbox journal.
struct Watch {
    platform: &'static str,
    target: u64,
    /// sent + failed before the phase.
    baseline: u64,
    /// The journal's last sequence number read.
    since: u64,
    sends: Vec<JournalSend>,
    done_at: Option<Instant>,
}

impl Watch {
    async fn new(api: &Api, platform: &'static str, target: usize) -> BenchResult<Watch> {
        let metrics = api.metrics().await?;
        let baseline = counter(&metrics, "parley_messages_sent_total", platform)
            + counter(&metrics, "parley_messages_failed_total", platform);
        let since = api.sandbox_last_seq().await?;
        Ok(Watch { platform, target: target as u64, baseline, since, sends: Vec::new(), done_at: None })
    }

    async fn read_journal(&mut self, api: &Api) -> BenchResult<()> {
        let new = api.sends_since(self.platform, self.since).await?;
        if let Some(last) = new.last() {
            self.since = last.seq;
        }
        self.sends.extend(new);
        Ok(())
    }
}

/// Waits until every watched platform has sent (or failed) its target, reading the journal as it
/// goes; fails when the API refused a message or nothing moved for `STALL_LIMIT`.
async fn wait_for_sends(
    api: &Api,
    watches: &mut [Watch],
    enqueue: JoinHandle<BenchResult<Vec<Attempt>>>,
) -> BenchResult<Vec<Attempt>> {
    let mut enqueue = Some(enqueue);
    let mut attempts = None;
    let mut last_progress = (0u64, Instant::now());
    let mut journal_read = Instant::now();
    loop {
        if enqueue.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(handle) = enqueue.take()
        {
            let done = handle.await.map_err(|e| format!("the API client task failed: {e}"))??;
            let refused: Vec<&String> = done.iter().filter_map(|a| a.outcome.as_ref().err()).collect();
            if let Some(first) = refused.first() {
                return Err(format!(
                    "{} of {} API calls were not answered 202; the first: {first}",
                    refused.len(),
                    done.len()
                ));
            }
            attempts = Some(done);
        }
        let metrics = api.metrics().await?;
        let now = Instant::now();
        let mut progress = 0;
        for watch in watches.iter_mut() {
            let done = (counter(&metrics, "parley_messages_sent_total", watch.platform)
                + counter(&metrics, "parley_messages_failed_total", watch.platform))
            .saturating_sub(watch.baseline);
            if done >= watch.target && watch.done_at.is_none() {
                watch.done_at = Some(now);
            }
            progress += done;
        }
        if progress > last_progress.0 || enqueue.is_some() {
            last_progress = (progress, now);
        } else if now - last_progress.1 > STALL_LIMIT {
            let state: Vec<String> = watches
                .iter()
                .map(|w| {
                    format!(
                        "{} {} of {}",
                        w.platform,
                        counter(&metrics, "parley_messages_sent_total", w.platform),
                        w.target
                    )
                })
                .collect();
            return Err(format!("nothing was sent for {} s; sent: {}", STALL_LIMIT.as_secs(), state.join(", ")));
        }
        if now - journal_read >= JOURNAL_POLL {
            for watch in watches.iter_mut() {
                watch.read_journal(api).await?;
            }
            journal_read = now;
        }
        if let Some(attempts) = &attempts
            && watches.iter().all(|w| w.done_at.is_some())
        {
            for watch in watches.iter_mut() {
                watch.read_journal(api).await?;
            }
            return Ok(attempts.clone());
        }
        tokio::time::sleep(METRICS_POLL).await;
    }
}

/// Each message's status through the API, waiting up to 10 s for ones still on their way to
/// `sent` (the store learns of a send just after the channel counts it).
async fn final_statuses(api: &Api, ids: Vec<String>, concurrency: usize) -> BenchResult<BTreeMap<String, u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tally = BTreeMap::new();
    let mut pending = ids;
    loop {
        let ids = Arc::new(std::mem::take(&mut pending));
        let statuses = concurrently(ids.len(), concurrency, {
            let (api, ids) = (api.clone(), ids.clone());
            move |i| {
                let (api, ids) = (api.clone(), ids.clone());
                async move {
                    match api.get_json(&api.daemon_url(&format!("/api/messages/{}", ids[i])), true).await? {
                        (200, body) => Ok(body["status"].as_str().unwrap_or("(none)").to_owned()),
                        (status, body) => Err(format!(
                            "GET /api/messages/{} answered {status}: {}",
                            ids[i],
                            snippet(&body.to_string())
                        )),
                    }
                }
            }
        })
        .await?;
        for (i, status) in statuses.into_iter().enumerate() {
            let status = status?;
            if matches!(status.as_str(), "queued" | "sending") && Instant::now() < deadline {
                pending.push(ids[i].clone());
            } else {
                *tally.entry(status).or_default() += 1;
            }
        }
        if pending.is_empty() {
            return Ok(tally);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn check_all_sent(statuses: &BTreeMap<String, u64>, expected: usize) -> BenchResult<()> {
    let sent: u64 = ["sent", "delivered", "read"].iter().filter_map(|s| statuses.get(*s)).sum();
    if sent as usize != expected {
        return Err(format!("{sent} of {expected} messages reached sent or later: {}", tally_text(statuses)));
    }
    Ok(())
}

fn tally_text(tally: &BTreeMap<String, u64>) -> String {
    tally.iter().map(|(status, n)| format!("{status} {n}")).collect::<Vec<_>>().join(", ")
}

/// Runs `job(0..count)` with at most `concurrency` at a time; the answers in index order.
async fn concurrently<T, F, Fut>(count: usize, concurrency: usize, job: F) -> BenchResult<Vec<T>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (job, next) = (job.clone(), next.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return done;
                }
                done.push((i, job(i).await));
            }
        });
    }
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = workers.join_next().await {
        for (i, result) in joined.map_err(|e| format!("a client task failed: {e}"))? {
            results[i] = Some(result);
        }
    }
    results.into_iter().map(|r| r.ok_or_else(|| "a client task lost a result".to_owned())).collect()
}

// ---------------------------------------------------------------------------------------------
// The journal

/// One send request the sandbox received.
struct JournalSend {
    seq: u64,
    at_ms: i64,
    /// Our message id, from the Messenger `metadata` or the WhatsApp `biz_opaque_callback_data`.
    message_id: Option<String>,
}

/// What the journal says about a set of accepted messages.
struct JournalReport {
    sends: usize,
    distinct: usize,
    /// Requests beyond one per message (retries).
    extra_attempts: usize,
    /// Accepted messages with no send request in the journal.
    missing: usize,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    /// API call → the message's last send request at the sandbox, sorted.
    latencies_ms: Vec<f64>,
}

impl JournalReport {
    fn new(sends: &[JournalSend], accepted: &HashMap<String, Attempt>) -> JournalReport {
        let mut last_at: HashMap<&str, i64> = HashMap::new();
        for send in sends {
            if let Some(id) = &send.message_id {
                last_at.insert(id, send.at_ms);
            }
        }
        let mut latencies_ms: Vec<f64> = accepted
            .iter()
            .filter_map(|(id, attempt)| {
                last_at.get(id.as_str()).map(|at| (*at as f64 - attempt.started_epoch_ms).max(0.0))
            })
            .collect();
        sort(&mut latencies_ms);
        let ours: HashSet<&str> = accepted.keys().map(String::as_str).collect();
        let distinct = last_at.keys().filter(|id| ours.contains(*id)).count();
        JournalReport {
            sends: sends.len(),
            distinct,
            extra_attempts: sends.len().saturating_sub(last_at.len()),
            missing: accepted.len() - distinct,
            first_ms: sends.iter().map(|s| s.at_ms).min(),
            last_ms: sends.iter().map(|s| s.at_ms).max(),
            latencies_ms,
        }
    }

    fn print_sends(&self, label: &str) {
        let span = match (self.first_ms, self.last_ms) {
            (Some(first), Some(last)) => (last - first) as f64 / 1e3,
            _ => 0.0,
        };
        let rate =
            if span > 0.0 { format!("{:.0} /s", (self.sends.saturating_sub(1)) as f64 / span) } else { "-".into() };
        println!(
            "  {label} {} send requests for {} messages ({} extra attempts), first→last {span:.2} s = {rate}",
            self.sends, self.distinct, self.extra_attempts
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The API and the sandbox's control API

/// HTTP access to the daemon and the sandbox.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    /// `host:port` of each.
    daemon: String,
    sandbox: String,
}

impl Api {
    fn daemon_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon)
    }

    fn sandbox_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sandbox)
    }

    async fn get_json(&self, url: &str, auth: bool) -> BenchResult<(u16, Value)> {
        let mut request = self.client.get(url);
        if auth {
            request = request.bearer_auth(API_TOKEN);
        }
        answer(url, request.send().await).await
    }

    async fn post_json(&self, url: &str, body: &Value, auth: bool) -> BenchResult<(u16, Value)> {
        let mut request = self.client.post(url).json(body);
        if auth {
            request = request.bearer_auth(API_TOKEN);
        }
        answer(url, request.send().await).await
    }

    /// A customer's message to the Page, signed as Meta signs it.
    async fn post_messenger_webhook(&self, i: usize) -> BenchResult<()> {
        // Sent now: the reply's window (24 hours from the customer's message) is open.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let body = json!({"object":"page","entry":[{"id":PAGE_ID,"time":now,"messaging":[{
            "sender":{"id":psid(i)},"recipient":{"id":PAGE_ID},"timestamp":now,
            "message":{"mid":format!("m_bench_in_{i}"),"text":"Hi, where is my order?"}}]}]})
        .to_string();
        let signature =
            format!("sha256={}", parley::platform::sign_hex(FACEBOOK_SECRET.as_bytes(), &[body.as_bytes()]));
        let url = self.daemon_url("/webhooks/facebook");
        let response = self
            .client
            .post(&url)
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match answer(&url, response).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("POST /webhooks/facebook answered {status}: {}", snippet(&body.to_string()))),
        }
    }

    /// Every conversation id of `platform`, following cursors.
    async fn conversation_ids(&self, platform: &str) -> BenchResult<Vec<String>> {
        let mut ids = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let path = match &before {
                Some(cursor) => format!("/api/conversations?platform={platform}&limit=200&before={cursor}"),
                None => format!("/api/conversations?platform={platform}&limit=200"),
            };
            let page = match self.get_json(&self.daemon_url(&path), true).await? {
                (200, page) => page,
                (status, body) => return Err(format!("GET {path} answered {status}: {}", snippet(&body.to_string()))),
            };
            let conversations = page["conversations"]
                .as_array()
                .ok_or_else(|| format!("GET {path}: no conversations array: {}", snippet(&page.to_string())))?;
            for conversation in conversations {
                let id = conversation["id"].as_str().ok_or_else(|| format!("GET {path}: a conversation without id"))?;
                ids.push(id.to_owned());
            }
            match page["next"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => return Ok(ids),
            }
        }
    }

    /// The daemon's Prometheus text as `name{labels}` → value.
    async fn metrics(&self) -> BenchResult<HashMap<String, f64>> {
        let url = self.daemon_url("/metrics");
        let response = self.client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        if status != 200 {
            return Err(format!("GET /metrics answered {status}: {}", snippet(&text)));
        }
        Ok(text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter_map(|(name, value)| value.trim().parse().ok().map(|v| (name.to_owned(), v)))
            .collect())
    }

    async fn sandbox_health(&self) -> BenchResult<Value> {
        match self.get_json(&self.sandbox_url("/_sandbox/health"), false).await? {
            (200, health) => Ok(health),
            (status, body) => Err(format!("GET /_sandbox/health answered {status}: {}", snippet(&body.to_string()))),
        }
    }

    async fn sandbox_last_seq(&self) -> BenchResult<u64> {
        let health = self.sandbox_health().await?;
        health["last_seq"]
            .as_u64()
            .ok_or_else(|| format!("/_sandbox/health has no last_seq: {}", snippet(&health.to_string())))
    }

    async fn receipt_stats(&self) -> BenchResult<String> {
        let health = self.sandbox_health().await?;
        let r = &health["receipts"];
        Ok(format!(
            "the sandbox posted {}, failed {}, dropped {}, {} still pending",
            r["posted"], r["failed"], r["dropped"], r["pending"]
        ))
    }

    /// Send requests (`POST …/messages`) of `platform` after sequence number `since`. Only what the
    /// bench needs is kept: the journal also holds headers, tokens included, never printed.
    async fn sends_since(&self, platform: &str, since: u64) -> BenchResult<Vec<JournalSend>> {
        let path = format!("/_sandbox/requests?platform={platform}&since={since}");
        let journal = match self.get_json(&self.sandbox_url(&path), false).await? {
            (200, journal) => journal,
            (status, _) => return Err(format!("GET {path} answered {status}")),
        };
        let requests = journal["requests"].as_array().ok_or_else(|| format!("GET {path}: no requests array"))?;
        let mut sends = Vec::new();
        for request in requests {
            let path = request["path"].as_str().unwrap_or_default();
            if request["method"] != "POST" || !path.ends_with("/messages") {
                continue;
            }
            let (Some(seq), Some(at_ms)) = (request["seq"].as_u64(), request["at_ms"].as_i64()) else {
                return Err(format!("GET /_sandbox/requests: an entry without seq or at_ms at {path}"));
            };
            let id = match platform {
                "facebook" => request["body"]["message"]["metadata"].as_str().and_then(|m| m.strip_prefix("parley:")),
                _ => request["body"]["biz_opaque_callback_data"].as_str(),
            };
            sends.push(JournalSend { seq, at_ms, message_id: id.map(str::to_owned) });
        }
        Ok(sends)
    }
}

/// Status and JSON body (Null when the body is not JSON).
async fn answer(url: &str, response: reqwest::Result<reqwest::Response>) -> BenchResult<(u16, Value)> {
    let response = response.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| format!("{url}: reading the answer: {e}"))?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

fn counter(metrics: &HashMap<String, f64>, name: &str, platform: &str) -> u64 {
    metrics.get(&format!("{name}{{platform=\"{platform}\"}}")).map_or(0, |v| *v as u64)
}

fn psid(i: usize) -> String {
    format!("72123456{i:08}")
}

fn snippet(text: &str) -> String {
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

fn epoch_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn sort(values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(v) => format!("{v:.1} ms"),
        None => "-".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// CPU seconds used by the daemon, the sandbox and this process over a phase, from /proc.
struct CpuClock {
    start: Vec<(String, Option<f64>)>,
}

impl CpuClock {
    fn start(pids: &[u32]) -> Self {
        let mut start: Vec<(String, Option<f64>)> = pids.iter().map(|p| (p.to_string(), None)).collect();
        start.push(("self".into(), None));
        for (pid, seconds) in &mut start {
            *seconds = cpu_seconds(pid);
        }
        CpuClock { start }
    }

    /// "cores used" over `wall`, as text: parley, sandbox, bench.
    fn stop(self, wall: Duration) -> String {
        let wall = wall.as_secs_f64().max(1e-3);
        let names = ["parley", "sandbox", "bench client"];
        let parts: Vec<String> = self
            .start
            .iter()
            .zip(names)
            .map(|((pid, start), name)| match (start, cpu_seconds(pid)) {
                (Some(a), Some(b)) => format!("{name} {:.2} cores", (b - a) / wall),
                _ => format!("{name} unknown"),
            })
            .collect();
        format!("{} (from the first API call until all were sent)", parts.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// What one rig's daemon and sandbox are configured with.
struct RigSettings {
    facebook_rate: u32,
    whatsapp_rate: u32,
    /// Viber's and LinkedIn's `rate_per_minute`; None keeps the shipped defaults.
    per_minute_rate: Option<u32>,
    max_in_flight: u32,
    max_queued: usize,
    sandbox_rate_limits: bool,
    /// Log every answer of the sandbox (debug) so 429s can be counted.
    log_answers: bool,
}

/// A daemon and a sandbox pointed at each other, on a temporary config and store.
struct Rig {
    api: Api,
    // Fields drop in order: both processes are killed before their directory goes.
    daemon: Process,
    sandbox: Process,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(settings: RigSettings) -> BenchResult<Rig> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        // The sandbox must know where to post receipts before the daemon exists: reserve a port.
        let daemon_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("reserving a loopback port: {e}"))?
            .port();
        let sandbox_config = dir.path().join("sandbox.toml");
        write(&sandbox_config, &rig_config(&dir.path().join("unused"), daemon_port, "127.0.0.1:9", &settings))?;
        let parley_url = format!("http://127.0.0.1:{daemon_port}");
        let mut args = vec!["sandbox", "--listen", "127.0.0.1:0", "--parley-url", &parley_url];
        if !settings.sandbox_rate_limits {
            args.push("--no-rate-limits");
        }
        let sandbox_log = if settings.log_answers {
            "warn,parley::sandbox=info,parley::sandbox::server=debug"
        } else {
            "warn,parley::sandbox=info"
        };
        let (sandbox, sandbox_addr) =
            Process::spawn("sandbox", &args, &sandbox_config, Some(sandbox_log), "Sandbox listening.")?;
        let daemon_config = dir.path().join("config.toml");
        write(&daemon_config, &rig_config(&dir.path().join("store"), daemon_port, &sandbox_addr, &settings))?;
        let (daemon, daemon_addr) = Process::spawn("parley", &["serve"], &daemon_config, None, "Listening.")?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        let rig = Rig { api: Api { client, daemon: daemon_addr, sandbox: sandbox_addr }, daemon, sandbox, _dir: dir };
        rig.wait_ready().await.map_err(|e| rig.explain(e))?;
        Ok(rig)
    }

    /// Polls `/ready` (store and every channel up, tokens checked against the sandbox).
    async fn wait_ready(&self) -> BenchResult<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self.api.get_json(&self.api.daemon_url("/ready"), false).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", snippet(&body.to_string())),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("parley did not become ready within 30 s; /ready: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Adds the tails of both logs to an error.
    fn explain(&self, error: String) -> String {
        format!(
            "{error}\n--- parley log (last lines)\n{}\n--- sandbox log (last lines)\n{}",
            self.daemon.tail(20),
            self.sandbox.tail(20)
        )
    }

    fn print_daemon_warnings(&self) {
        let lines = self.daemon.lines_other_than("Listening.");
        if lines.total > 0 {
            println!("  parley logged {} warning/error lines; the last ones:", lines.total);
            for line in lines.last {
                println!("    {line}");
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.daemon.stop();
        self.sandbox.stop();
    }
}

fn write(path: &Path, text: &str) -> BenchResult<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Every platform on, every API base at the sandbox; the sandbox reads the same file for the
/// tokens it accepts, the secrets it signs receipts with, and its limits. WhatsApp has no secret of
/// its own: it falls back to `facebook.app_secret` (one Meta app), the app `debug_token` knows.
fn rig_config(store: &Path, daemon_port: u16, sandbox: &str, s: &RigSettings) -> String {
    let per_minute = s.per_minute_rate.map(|r| format!("rate_per_minute = {r}")).unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:{daemon_port}"
max_connections = 4096
shutdown_grace_secs = 5

[storage]
path = "{store}"

[api]
token = "{API_TOKEN}"

[log]
level = "warn,parley::app=info"

[outbound]
max_in_flight = {max_in_flight}
max_queued = {max_queued}
token_check_interval_secs = 3600

[facebook]
enabled = true
app_id = "1234567890"
app_secret = "{FACEBOOK_SECRET}"
verify_token = "bench-facebook-verify"
page_id = "{PAGE_ID}"
page_access_token = "bench-page-token"
api_base = "http://{sandbox}/v23.0"
rate_per_second = {facebook_rate}

[whatsapp]
enabled = true
verify_token = "bench-whatsapp-verify"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token = "bench-wa-token"
api_base = "http://{sandbox}/v23.0"
rate_per_second = {whatsapp_rate}

[viber]
enabled = true
bot_token = "bench-viber-bot-token"
bot_name = "Bench Support"
api_base = "http://{sandbox}/pa"
{per_minute}

[linkedin]
enabled = true
client_id = "bench-linkedin-client"
client_secret = "bench-linkedin-client-secret"
access_token = "bench-linkedin-token"
refresh_token = "bench-linkedin-refresh"
organization_id = "2414183"
api_base = "http://{sandbox}"
oauth_base = "http://{sandbox}/oauth/v2"
{per_minute}
"#,
        store = store.display(),
        max_in_flight = s.max_in_flight,
        max_queued = s.max_queued,
        facebook_rate = s.facebook_rate,
        whatsapp_rate = s.whatsapp_rate,
    )
}

/// What a process logged: the last lines kept, the rest counted; the sandbox's `Request.` debug
/// lines only counted by platform and answer status.
#[derive(Default)]
struct Log {
    last: VecDeque<String>,
    total: u64,
    answers: BTreeMap<(String, u16), u64>,
}

/// Log lines other than a marker: how many, and the last ones kept.
struct OtherLines {
    total: u64,
    last: Vec<String>,
}

/// A `parley` child process; killed on drop.
struct Process {
    child: Child,
    log: Arc<Mutex<Log>>,
}

impl Process {
    /// Starts `parley ARGS --config CONFIG` and waits for the log line `marker`, whose `addr=`
    /// field is the address it listens on.
    fn spawn(
        name: &str,
        args: &[&str],
        config: &Path,
        rust_log: Option<&str>,
        marker: &'static str,
    ) -> BenchResult<(Process, String)> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parley"));
        command.args(args).arg("--config").arg(config).stdout(Stdio::null()).stderr(Stdio::piped());
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().map_err(|e| format!("starting `parley {}`: {e}", args.join(" ")))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err(format!("{name}: no stderr pipe"));
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let writer = log.clone();
        // Keep draining stderr for the whole run, or the process would block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(marker)
                    && let Some(addr) = field(&line, "addr")
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = writer.lock().unwrap_or_else(PoisonError::into_inner);
                if line.contains("Request.")
                    && let (Some(platform), Some(status)) =
                        (field(&line, "platform"), field(&line, "status").and_then(|s| s.parse().ok()))
                {
                    *log.answers.entry((platform, status)).or_default() += 1;
                    continue;
                }
                log.total += 1;
                if log.last.len() == LOG_LINES_KEPT {
                    log.last.pop_front();
                }
                log.last.push_back(line);
            }
        });
        let mut process = Process { child, log };
        match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok((process, addr)),
            Err(_) => {
                process.stop();
                Err(format!("{name} did not log `{marker}` within 30 s; its log:\n{}", process.tail(40)))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = log.last.len().saturating_sub(n);
        log.last.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }

    fn lines_other_than(&self, marker: &str) -> OtherLines {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let marked = log.last.iter().filter(|l| l.contains(marker)).count() as u64;
        let others: Vec<String> = log.last.iter().filter(|l| !l.contains(marker)).cloned().collect();
        let skip = others.len().saturating_sub(10);
        OtherLines { total: log.total.saturating_sub(marked), last: others.into_iter().skip(skip).collect() }
    }

    /// The sandbox's answers by (platform, HTTP status), from its debug log.
    fn answers(&self) -> BTreeMap<(String, u16), u64> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).answers.clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of `name=` in a tracing text line, without quotes.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

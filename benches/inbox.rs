//! Web inbox benchmark: how fast the page is with 10,000 conversations, in headless Chromium
//! against the release daemon on loopback. Prints numbers, asserts nothing.
//!
//! Run by hand, never in CI:
//!
//! ```text
//! cargo bench --bench inbox -- [--conversations N] [--runs N] [--binary PATH]...
//! ```
//!
//! `--binary` (repeatable) measures other builds of the daemon (the page is compiled into the
//! binary) one after the other in the same run, for a before/after comparison; the default is
//! this build.
//!
//! The store is filled with `--conversations` (10,000) WhatsApp conversations through signed
//! webhooks. Then, `--runs` (10) times each:
//! - cold: a fresh browser and profile (nothing cached), signed in by cookie, opens `/`;
//! - warm: the same page reloaded in a browser that has it cached.
//!
//! For each load: first paint (`first-paint`, else `first-contentful-paint`), DOM content loaded
//! (the HTML and every module fetched and run), and time to interactive of the list: from
//! navigation start to the first page of conversations rendered and focusable (the app sets
//! `data-ready="list"` and `data-ready-ms` = `performance.now()` then). Medians are printed, with
//! the total size of the page and its assets (uncompressed).

#[path = "../tests/support/browser.rs"]
#[allow(dead_code)]
mod browser;
#[allow(dead_code)] // the load and process helpers serve the other benches
mod common;

use std::time::{Duration, Instant};

use browser::Browser;
use common::daemon::Daemon;
use common::{flag_pairs, ingest_config, positive};
use serde_json::{Value, json};

const WHATSAPP_SECRET: &str = "bench-whatsapp-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const API_TOKEN: &str = "bench-api-token-7c2e";
/// Conversations per webhook body (one message each).
const PER_BODY: usize = 100;

const USAGE: &str = "usage: cargo bench --bench inbox -- [--conversations N] [--runs N] [--binary PATH]...";

fn main() {
    let mut conversations = 10_000;
    let mut runs = 10;
    let mut binaries = Vec::new();
    let pairs = flag_pairs(std::env::args().skip(1)).unwrap_or_else(|e| panic!("{e}\n{USAGE}"));
    for (flag, value) in pairs {
        match flag.as_str() {
            "--conversations" => conversations = positive(&flag, &value).unwrap_or_else(|e| panic!("{e}")),
            "--runs" => runs = positive(&flag, &value).unwrap_or_else(|e| panic!("{e}")),
            "--binary" => binaries.push(std::path::PathBuf::from(value)),
            _ => panic!("unknown option {flag}\n{USAGE}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if binaries.is_empty() {
        binaries.push(Daemon::release_binary());
    }
    runtime.block_on(run(&binaries, conversations, runs));
}

/// One daemon per binary, each on its own store of `conversations`; then `runs` cold loads and
/// `runs` warm reloads of each, alternating between the binaries run by run (so that the host's
/// load falls on all of them alike), and the medians.
async fn run(binaries: &[std::path::PathBuf], conversations: usize, runs: usize) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut daemons = Vec::new();
    for binary in binaries {
        let daemon = Daemon::start(binary, |store| ingest_config(store, WHATSAPP_SECRET, PHONE_NUMBER_ID));
        let base = format!("http://{}", daemon.addr);
        let filling = Instant::now();
        fill(&client, &base, conversations).await;
        let (status, page) = get_json(&client, &format!("{base}/api/conversations?limit=1")).await;
        assert_eq!(status, 200, "{page}");
        println!(
            "{}: {conversations} conversations filled in {:.1} s (newest: {})",
            binary.display(),
            filling.elapsed().as_secs_f64(),
            page["conversations"][0]["contact_name"]
        );
        daemons.push((daemon, base));
    }
    println!(
        "assets of this build: {} bytes ({:.1} KiB) uncompressed, page and every asset",
        total(),
        total() as f64 / 1024.0
    );

    let mut cold: Vec<Vec<Sample>> = binaries.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (i, (_, base)) in daemons.iter().enumerate() {
            let browser = Browser::start(1280, 800).await;
            sign_in(&browser, base).await;
            browser.goto(&format!("{base}/")).await;
            cold[i].push(measure(&browser).await);
            browser.quit().await;
        }
    }
    let mut warm: Vec<Vec<Sample>> = binaries.iter().map(|_| Vec::new()).collect();
    let mut browsers = Vec::new();
    for (_, base) in &daemons {
        let browser = Browser::start(1280, 800).await;
        sign_in(&browser, base).await;
        browser.goto(&format!("{base}/")).await;
        measure(&browser).await;
        browsers.push(browser);
    }
    for _ in 0..runs {
        for (i, browser) in browsers.iter().enumerate() {
            browser.client.refresh().await.expect("reload");
            warm[i].push(measure(browser).await);
        }
    }
    let mut interactive = Vec::new();
    for (i, browser) in browsers.into_iter().enumerate() {
        let shown = browser.js("return document.querySelectorAll('#conversations li').length", vec![]).await;
        let focused =
            browser.js("return document.activeElement && document.activeElement.getAttribute('role')", vec![]).await;
        browser.quit().await;
        println!("\n== {}", binaries[i].display());
        println!("load of / with {conversations} conversations, medians of {runs} runs (ms from navigation start):");
        println!(
            "{:<6} {:>12} {:>12} {:>10} {:>10} {:>10} {:>16}",
            "", "first paint", "DOM loaded", "session", "feed open", "list page", "list interactive"
        );
        for (name, samples) in [("cold", &cold[i]), ("warm", &warm[i])] {
            println!(
                "{name:<6} {:>12.1} {:>12.1} {:>10.1} {:>10.1} {:>10.1} {:>16.1}",
                median(samples.iter().map(|s| s.first_paint)),
                median(samples.iter().map(|s| s.dom_loaded)),
                median(samples.iter().map(|s| s.session)),
                median(samples.iter().map(|s| s.feed)),
                median(samples.iter().map(|s| s.list)),
                median(samples.iter().map(|s| s.interactive)),
            );
        }
        println!("(list items rendered at interactive: {shown}; focus on an element of role {focused})");
        interactive
            .push((median(cold[i].iter().map(|s| s.interactive)), median(warm[i].iter().map(|s| s.interactive))));
    }
    println!("\ntargets: list interactive under 300 ms, assets under 150 KiB uncompressed");
    if let [(cold_a, warm_a), (cold_b, warm_b), ..] = interactive.as_slice() {
        println!("list interactive, second binary / first: cold {:.2}, warm {:.2}", cold_b / cold_a, warm_b / warm_a);
    }
    for (daemon, _) in &daemons {
        daemon.print_log_tail(3);
    }
}

fn total() -> usize {
    parley::http::inbox::total_size()
}

struct Sample {
    first_paint: f64,
    /// The session known, the live feed open, the first page of the list rendered.
    session: f64,
    feed: f64,
    list: f64,
    dom_loaded: f64,
    interactive: f64,
}

async fn measure(browser: &Browser) -> Sample {
    let (value, _) = browser
        .wait_for(
            "the list to be interactive",
            "const d = document.documentElement.dataset;
             if (d.ready !== 'list') return null;
             const paints = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
             const nav = performance.getEntriesByType('navigation')[0];
             const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
             return { ready: Number(d.readyMs), paint: paints['first-paint'] ?? paints['first-contentful-paint'] ?? null,
                      dom: nav ? nav.domContentLoadedEventEnd : null,
                      session: mark('parley:session'), feed: mark('parley:feed'), list: mark('parley:list') };",
            &[],
            Duration::from_secs(60),
        )
        .await;
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    Sample {
        first_paint: number(&value["paint"]),
        session: number(&value["session"]),
        feed: number(&value["feed"]),
        list: number(&value["list"]),
        dom_loaded: number(&value["dom"]),
        interactive: number(&value["ready"]),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 }
}

/// Signs the browser in from a page of the daemon's that loads nothing else (`/health`), so
/// that the inbox's own files are not cached yet: the session cookie is set by the API's answer.
async fn sign_in(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/health")).await;
    let status = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' },
                                     body: JSON.stringify({ token: arguments[0] }) }).then(r => done(r.status), () => done(0));",
            vec![json!(API_TOKEN)],
        )
        .await
        .expect("sign in");
    assert_eq!(status, json!(200), "sign in");
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(API_TOKEN).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `conversations` WhatsApp customers write once each, `PER_BODY` to a signed webhook, four
/// webhooks in flight.
async fn fill(client: &reqwest::Client, base: &str, conversations: usize) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let bodies: Vec<String> = (0..conversations.div_ceil(PER_BODY))
        .map(|b| {
            let range = b * PER_BODY..((b + 1) * PER_BODY).min(conversations);
            let contacts: Vec<Value> = range
                .clone()
                .map(|i| json!({ "profile": { "name": format!("Customer {i:05}") }, "wa_id": format!("55119{i:08}") }))
                .collect();
            let messages: Vec<Value> = range
                .map(|i| {
                    json!({ "from": format!("55119{i:08}"), "id": format!("wamid.inboxbench.{i}"), "timestamp": now.to_string(),
                            "type": "text", "text": { "body": format!("Hello, this is message {i} about order {}", 1000 + i) } })
                })
                .collect();
            json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages",
                "value": { "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": contacts, "messages": messages } }] }] })
            .to_string()
        })
        .collect();
    let url = format!("{base}/webhooks/whatsapp");
    for chunk in bodies.chunks(4) {
        let posts: Vec<_> = chunk
            .iter()
            .map(|body| {
                let signature =
                    format!("sha256={}", parley::platform::sign_hex(WHATSAPP_SECRET.as_bytes(), &[body.as_bytes()]));
                let request = client
                    .post(&url)
                    .header("x-hub-signature-256", signature)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send();
                tokio::spawn(request)
            })
            .collect();
        for post in posts {
            let answer = post.await.expect("the post task").expect("post a webhook");
            assert_eq!(answer.status(), 200, "webhook refused");
        }
    }
}

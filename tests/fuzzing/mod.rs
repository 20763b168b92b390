//! The fuzz harness behind `tests/fuzz.rs`: for one platform, N bodies made from the seed bodies
//! by the mutator, each signed and verified, parsed, stored and read back through the API types,
//! with every property checked. Deterministic from a printed seed; a failure names the seed and
//! the body's index, writes the body to a file and says how to replay it.

pub mod corpus;
pub mod mutate;
pub mod signing;
pub mod store_check;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use parley::model::{Platform, Timestamp};
use parley::platform::{self, ParseContext};

/// How a run is set up, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `PARLEY_FUZZ_SEED`, else random (printed either way).
    pub seed: u64,
    /// `PARLEY_FUZZ_BODIES`: bodies per platform.
    pub bodies: u64,
    /// `PARLEY_FUZZ_START`: index of the first body (to replay from a store boundary).
    pub start: u64,
    /// `PARLEY_FUZZ_STORE_EVERY`: a fresh store every this many bodies (indexes that are
    /// multiples of it start one), so a long run does not grow without bound.
    pub store_every: u64,
}

/// Bodies per platform when `PARLEY_FUZZ_BODIES` is not set: the short run CI makes.
const DEFAULT_BODIES: u64 = 1_500;

impl Settings {
    pub fn from_env() -> Settings {
        let number = |name: &str| {
            std::env::var(name).ok().map(|v| {
                v.trim().replace('_', "").parse::<u64>().unwrap_or_else(|_| panic!("{name} must be a whole number"))
            })
        };
        Settings {
            seed: number("PARLEY_FUZZ_SEED").unwrap_or_else(rand::random),
            bodies: number("PARLEY_FUZZ_BODIES").unwrap_or(DEFAULT_BODIES),
            start: number("PARLEY_FUZZ_START").unwrap_or(0),
            store_every: number("PARLEY_FUZZ_STORE_EVERY").unwrap_or(2_000).max(1),
        }
    }
}

/// What a run did.
#[derive(Default, Debug)]
struct Tally {
    bodies: u64,
    /// Bodies that parsed into events.
    parsed: u64,
    /// Bodies that did not parse (signed but not a webhook): quarantined.
    quarantined: u64,
    /// Events parsed, and stored for the first time.
    events: u64,
    stored: u64,
    messages: u64,
    /// Bodies left as they were (every 16th), so the unmutated path is always covered.
    unmutated: u64,
}

/// The RNG of body `index`: derived from the seed, the platform and the index alone, so any
/// body can be made again without making the ones before it.
fn body_rng(seed: u64, platform: Platform, index: u64) -> StdRng {
    let mut mixed = seed ^ (u64::from(platform.tag()) << 56) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64, so that neighbouring indexes give unrelated streams.
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    StdRng::seed_from_u64(mixed ^ (mixed >> 31))
}

/// The account a channel would be configured with.
fn account(platform: Platform) -> &'static str {
    match platform {
        Platform::Facebook => "fuzz-page",
        Platform::Whatsapp => "fuzz-number",
        Platform::Viber => "fuzz-bot",
        Platform::Linkedin => "urn:li:organization:fuzz",
    }
}

/// Runs the harness for one platform; panics with the seed, the body index and the replay
/// command at the first property that fails.
pub fn run(platform: Platform) {
    let settings = Settings::from_env();
    let (seeds, source) = corpus::seeds(platform);
    eprintln!(
        "fuzz {platform}: seed {} · {} bodies from index {} · fresh store every {} · seeds: {source}",
        settings.seed, settings.bodies, settings.start, settings.store_every
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut tally = Tally::default();
    // The store before its directory: sled is closed before the files go.
    let mut store_dir: Option<(parley::store::Store, tempfile::TempDir)> = None;
    let end = settings.start.saturating_add(settings.bodies);
    for index in settings.start..end {
        if store_dir.is_none() || index % settings.store_every == 0 {
            if let Some((store, _)) = &store_dir {
                check_or_fail(platform, &settings, index - 1, WHOLE_STORE, || {
                    store_check::read_everything(store).map(|_| ())
                });
            }
            drop(store_dir.take());
            let dir = tempfile::tempdir().expect("temp dir");
            store_dir = Some((store_check::open(dir.path()), dir));
        }
        let store = &store_dir.as_ref().expect("opened above").0;
        let mut rng = body_rng(settings.seed, platform, index);
        let seed_body = seeds.choose(&mut rng).expect("seeds are not empty");
        let body = if index % 16 == 0 {
            tally.unmutated += 1;
            seed_body.clone()
        } else {
            mutate::mutate(&mut rng, seed_body, &seeds)
        };
        let received_at = Timestamp::from_millis(mutate::RECEIVED_BASE_MS + rng.random_range(0..86_400_000));
        check_or_fail(platform, &settings, index, &body, || {
            one_body(platform, &mut rng, store, &body, received_at, &mut tally)
        });
        tally.bodies += 1;
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            report(platform, "progress", &tally, started.elapsed(), end - index - 1);
        }
    }
    if let Some((store, _)) = &store_dir {
        check_or_fail(platform, &settings, end - 1, WHOLE_STORE, || store_check::read_everything(store).map(|_| ()));
    }
    report(platform, "done", &tally, started.elapsed(), 0);
}

/// What a failure of the whole-store check writes instead of a body.
const WHOLE_STORE: &[u8] = b"(the check of the whole store after this body failed: replay the store's bodies)";

/// Every property for one body.
fn one_body(
    platform: Platform,
    rng: &mut StdRng,
    store: &parley::store::Store,
    body: &[u8],
    received_at: Timestamp,
    tally: &mut Tally,
) -> Result<(), String> {
    signing::check(platform, rng, body)?;
    let ctx = ParseContext { account_id: account(platform), received_at };
    match platform::parse_webhook(platform, body, &ctx) {
        Ok(events) => {
            tally.parsed += 1;
            tally.events += events.len() as u64;
            store_check::check_events(&events, received_at)?;
            let outcome = store.ingest(&events, received_at).map_err(|e| format!("ingest failed: {e}"))?;
            tally.stored += outcome.stored as u64;
            tally.messages += outcome.messages as u64;
            // The same body again is a redelivery: it stores nothing new.
            let again =
                store.ingest(&events, received_at).map_err(|e| format!("ingest of a redelivery failed: {e}"))?;
            if again.stored != 0 {
                return Err(format!("a redelivery stored {} event(s) again", again.stored));
            }
            store_check::read_back(store, &events)?;
        }
        Err(error) => {
            tally.quarantined += 1;
            store
                .quarantine(platform, &error.to_string(), body, received_at)
                .map_err(|e| format!("quarantine failed: {e}"))?;
        }
    }
    Ok(())
}

/// Runs `check`, turning an `Err` or a panic into a failure that names everything needed to
/// replay it.
fn check_or_fail(
    platform: Platform,
    settings: &Settings,
    index: u64,
    body: &[u8],
    check: impl FnOnce() -> Result<(), String>,
) {
    let outcome = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(Ok(())) => return,
        Ok(Err(property)) => property,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".into());
            format!("PANIC: {text}")
        }
    };
    let file = failing_body_file(platform, settings.seed, index);
    let written = std::fs::write(&file, body)
        .map(|()| file.display().to_string())
        .unwrap_or_else(|e| format!("(could not write it: {e})"));
    let from = index - index % settings.store_every;
    panic!(
        "fuzz {platform}: body {index} of seed {} failed: {outcome}\n  body written to {written}\n  replay: \
         PARLEY_FUZZ_SEED={} PARLEY_FUZZ_START={from} PARLEY_FUZZ_BODIES={} PARLEY_FUZZ_STORE_EVERY={} cargo test --release --test fuzz {platform} -- --nocapture",
        settings.seed,
        settings.seed,
        index - from + 1,
        settings.store_every,
    );
}

fn failing_body_file(platform: Platform, seed: u64, index: u64) -> PathBuf {
    let dir = std::env::temp_dir().join("parley-fuzz");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{platform}-seed{seed}-body{index}.bin"))
}

fn report(platform: Platform, what: &str, tally: &Tally, elapsed: Duration, left: u64) {
    let rate = tally.bodies as f64 / elapsed.as_secs_f64().max(1e-9);
    let eta = if left > 0 { format!(" · ~{:.0} s left", left as f64 / rate.max(1e-9)) } else { String::new() };
    eprintln!(
        "fuzz {platform} {what}: {} bodies in {:.1} s ({rate:.0}/s{eta}) · parsed {} · quarantined {} · unmutated {} · events {} · stored {} · messages {}",
        tally.bodies,
        elapsed.as_secs_f64(),
        tally.parsed,
        tally.quarantined,
        tally.unmutated,
        tally.events,
        tally.stored,
        tally.messages
    );
}

//! Fuzzing on stable Rust: for each platform, `verify_signature`, `parse_webhook` and the store
//! round trip fed with mutated real-shaped bodies and structured random values (see
//! `tests/fuzzing/`). Properties: no panic anywhere; the right signature verifies and changed
//! ones are refused; every event is dated within the accepted window; every record the store
//! holds decodes; every API value round-trips through JSON.
//!
//! The short run (CI, `cargo nextest run`) makes 1,500 bodies per platform. A long run:
//!
//! ```sh
//! PARLEY_FUZZ_BODIES=10000000 cargo test --release --test fuzz -- --nocapture --test-threads 4
//! ```
//!
//! `PARLEY_FUZZ_SEED` fixes the seed (printed at start); `PARLEY_FUZZ_START` and
//! `PARLEY_FUZZ_STORE_EVERY` replay from a store boundary, as a failure's message spells out.

mod fuzzing;
mod support;

use parley::model::Platform;

#[test]
fn fuzzed_facebook_bodies_keep_every_property() {
    fuzzing::run(Platform::Facebook);
}

#[test]
fn fuzzed_whatsapp_bodies_keep_every_property() {
    fuzzing::run(Platform::Whatsapp);
}

#[test]
fn fuzzed_viber_bodies_keep_every_property() {
    fuzzing::run(Platform::Viber);
}

#[test]
fn fuzzed_linkedin_bodies_keep_every_property() {
    fuzzing::run(Platform::Linkedin);
}

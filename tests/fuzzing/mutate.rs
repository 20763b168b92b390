//! The mutator: turns a real-shaped body into a hostile one, deterministically from an RNG.
//!
//! Two families, stacked one to four at a time:
//! - byte-level: flip a bit, overwrite, insert or delete bytes, duplicate a span, splice with
//!   another body, truncate, insert a token (`"`, `{`, a huge number, invalid UTF-8...);
//! - structured: parse the body as JSON, pick a node (often a time field), and replace it with a
//!   structured random value written as raw JSON text (so that numbers beyond `u64`, exponents,
//!   lone surrogates and deep nesting can be expressed), remove it, wrap it, or duplicate an
//!   object key.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::Value;

/// The keys platforms put times under; structured mutations aim at them half of the time.
const TIME_KEYS: [&str; 8] =
    ["timestamp", "watermark", "lastModifiedAt", "occurredAt", "time", "created", "expiration_timestamp", "edit_time"];

/// Marks the node a fragment of raw JSON text replaces (serialised as a string, then swapped).
const SLOT: &str = "__parley_fuzz_slot_7f3a__";

/// The instant the harness pretends bodies arrive around (2026-12-01T00:00:00Z), so that runs do
/// not depend on the wall clock.
pub const RECEIVED_BASE_MS: i64 = 1_796_083_200_000;

/// Applies 1–4 mutations to `body`; `others` are bodies to splice with. Most bodies get only
/// structured mutations, so that they still parse and reach the store; a byte-level mutation
/// usually breaks the JSON (which tests quarantine, not the parsers' insides).
pub fn mutate(rng: &mut StdRng, body: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = body.to_vec();
    let (structured_steps, byte_steps) = match rng.random_range(0..10) {
        0..=5 => (rng.random_range(1..=4), 0),
        6..=7 => (rng.random_range(0..=2), 1),
        _ => (0, rng.random_range(1..=3)),
    };
    for _ in 0..structured_steps {
        out = structured(rng, &out);
    }
    for _ in 0..byte_steps {
        out = bytes(rng, &out, others);
    }
    out
}

/// One byte-level mutation.
fn bytes(rng: &mut StdRng, body: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = body.to_vec();
    let len = out.len();
    let at = |rng: &mut StdRng| if len == 0 { 0 } else { rng.random_range(0..len) };
    match rng.random_range(0..9) {
        0 if len > 0 => {
            let i = at(rng);
            out[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            out[i] = rng.random();
        }
        2 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..=8);
            let inserted: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            out.splice(i..i, inserted);
        }
        3 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            out.drain(i..i + n);
        }
        4 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(256));
            let span = out[i..i + n].to_vec();
            let j = rng.random_range(0..=len);
            out.splice(j..j, span);
        }
        5 if !others.is_empty() => {
            // Splice: a prefix of this body and a suffix of another.
            let other = others.choose(rng).expect("not empty");
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..=other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        6 => out.truncate(rng.random_range(0..=len)),
        _ => {
            let token = token(rng);
            let i = rng.random_range(0..=len);
            out.splice(i..i, token);
        }
    }
    out
}

/// A short token that is likely to matter to a JSON parser or to our readers.
fn token(rng: &mut StdRng) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"\\udc00\\ud800",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"0",
        b"-",
        b"e",
        b"1e400",
        b"253402300800000",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"null",
        b"true",
        b"NaN",
        b"\"timestamp\":",
        b"\"timestamp\":\"1000000000000000\",",
        b"\"timestamp\":253402300800000,",
        b"{\"a\":",
        b"[[[[[[[[[[",
        b"\n\t\r ",
    ];
    TOKENS.choose(rng).expect("not empty").to_vec()
}

/// One structured mutation; a body that is not JSON gets a byte-level one instead.
fn structured(rng: &mut StdRng, body: &[u8]) -> Vec<u8> {
    let Ok(mut root) = serde_json::from_slice::<Value>(body) else {
        return bytes(rng, body, &[]);
    };
    let mut walk = Walk { nodes: 0, pick: None, picked: None, time_paths: Vec::new() };
    walk.visit(&root, &mut Vec::new());
    let path = match (rng.random_bool(0.5), walk.time_paths.choose(rng)) {
        (true, Some(path)) => path.clone(),
        _ => {
            // A second walk stops at a node picked uniformly among all of them.
            let mut pick =
                Walk { nodes: 0, pick: Some(rng.random_range(0..walk.nodes)), picked: None, time_paths: Vec::new() };
            pick.visit(&root, &mut Vec::new());
            pick.picked.unwrap_or_default()
        }
    };
    match rng.random_range(0..10) {
        // Remove the node (a key from its object, an element from its array).
        0 if !path.is_empty() => {
            remove(&mut root, &path);
            serde_json::to_vec(&root).expect("a Value serialises")
        }
        // Wrap it in an array or object (a wrong type that still holds the right value).
        1 => {
            if let Some(node) = node_mut(&mut root, &path) {
                let inner = node.take();
                *node = if rng.random_bool(0.5) {
                    Value::Array(vec![inner])
                } else {
                    serde_json::json!({ "value": inner })
                };
            }
            serde_json::to_vec(&root).expect("a Value serialises")
        }
        // Duplicate an object key, with another value (serde_json keeps the last).
        2 => duplicate_key(rng, &root),
        _ => {
            let fragment = fragment(rng);
            match node_mut(&mut root, &path) {
                Some(node) => *node = Value::String(SLOT.to_owned()),
                None => return fragment.into_bytes(),
            }
            let text = serde_json::to_string(&root).expect("a Value serialises");
            text.replacen(&format!("\"{SLOT}\""), &fragment, 1).into_bytes()
        }
    }
}

/// A step into a JSON value.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// One walk over a JSON value: counts its nodes, keeps the paths of time fields, and (when
/// `pick` is set) the path of the node with that number.
struct Walk {
    nodes: usize,
    pick: Option<usize>,
    picked: Option<Vec<Step>>,
    time_paths: Vec<Vec<Step>>,
}

impl Walk {
    fn visit(&mut self, value: &Value, path: &mut Vec<Step>) {
        if self.picked.is_some() {
            return;
        }
        if self.pick == Some(self.nodes) {
            self.picked = Some(path.clone());
        }
        self.nodes += 1;
        if matches!(path.last(), Some(Step::Key(key)) if TIME_KEYS.contains(&key.as_str())) && self.pick.is_none() {
            self.time_paths.push(path.clone());
        }
        match value {
            Value::Object(fields) => {
                for (key, child) in fields {
                    path.push(Step::Key(key.clone()));
                    self.visit(child, path);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.visit(child, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

fn node_mut<'v>(root: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(root, |node, step| match step {
        Step::Key(key) => node.get_mut(key.as_str()),
        Step::Index(i) => node.get_mut(*i),
    })
}

fn remove(root: &mut Value, path: &[Step]) {
    let (last, parent) = path.split_last().expect("not the root");
    match (node_mut(root, parent), last) {
        (Some(Value::Object(fields)), Step::Key(key)) => {
            fields.remove(key);
        }
        (Some(Value::Array(items)), Step::Index(i)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

/// The body's text with one object's first key written twice, the second time with a random value.
fn duplicate_key(rng: &mut StdRng, root: &Value) -> Vec<u8> {
    let text = serde_json::to_string(root).expect("a Value serialises");
    let openings: Vec<usize> = text.match_indices("{\"").map(|(i, _)| i).collect();
    let Some(&at) = openings.choose(rng) else { return text.into_bytes() };
    let key_end = text[at + 2..].find('"').map(|i| at + 2 + i);
    let Some(key_end) = key_end else { return text.into_bytes() };
    let key = &text[at + 1..=key_end];
    format!("{}{key}:{},{}", &text[..=at], fragment(rng), &text[at + 1..]).into_bytes()
}

/// A structured random value as raw JSON text: numbers at the edges, times at the edges in both
/// units and both forms, floats and exponents, wrong types, long and odd strings, deep nesting.
pub fn fragment(rng: &mut StdRng) -> String {
    let received = RECEIVED_BASE_MS + rng.random_range(-86_400_000..86_400_000);
    match rng.random_range(0..12) {
        0 => {
            const EDGES: &[&str] = &[
                "0",
                "-0",
                "-1",
                "1",
                "99999999999",
                "100000000000",
                "100000000001",
                "1072915199",
                "1072915200",
                "1072915200000",
                "253402300799999",
                "253402300800000",
                "1000000000000000",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "18446744073709551615",
                "18446744073709551616",
                "-18446744073709551616",
                "100000000000000000000000000000",
                "1e15",
                "1E15",
                "1e11",
                "1.0e12",
                "1718000000.0",
                "1718000000.5",
                "-0.0",
                "1e308",
                "1e309",
                "-1e309",
                "2.5e-324",
                "1.7976931348623157e308",
                "0.1",
            ];
            (*EDGES.choose(rng).expect("not empty")).to_owned()
        }
        1 => {
            // A time near the arrival, in seconds or milliseconds, as a number or a string.
            let offset = *[0, 1, -1, 86_400_000, 86_400_001, -86_400_000, 315_360_000_000, -315_360_000_000]
                .choose(rng)
                .expect("not empty");
            let ms = received + offset;
            let value = if rng.random_bool(0.5) { ms.to_string() } else { (ms / 1000).to_string() };
            if rng.random_bool(0.5) { value } else { format!("\"{value}\"") }
        }
        2 => {
            // A timestamp in a unit nobody meant: microseconds, nanoseconds.
            let value = i128::from(received) * if rng.random_bool(0.5) { 1000 } else { 1_000_000 };
            if rng.random_bool(0.5) { value.to_string() } else { format!("\"{value}\"") }
        }
        3 => rng.random::<i64>().to_string(),
        4 => rng.random::<u64>().to_string(),
        5 => {
            let f: f64 = f64::from_bits(rng.random());
            if f.is_finite() { format!("{f:e}") } else { "1e999".to_owned() }
        }
        6 => {
            const STRINGS: &[&str] = &[
                "\"\"",
                "\"1e15\"",
                "\"1000000000000000\"",
                "\" 1718000000 \"",
                "\"+1718000000\"",
                "\"-1\"",
                "\"NaN\"",
                "\"inf\"",
                "\"-infinity\"",
                "\"1.5\"",
                "\"TIMESTAMP\"",
                "\"2024-06-10T06:13:20Z\"",
                "\"\\u0000\"",
                "\"\\ud83d\\ude00\"",
                "\"\\ud800\"",
                "\"\\\"\"",
                "\"שלום 👋🏽\"",
                "\"\\u202e\"",
            ];
            (*STRINGS.choose(rng).expect("not empty")).to_owned()
        }
        7 => {
            // Mostly short, sometimes long, rarely near the default 4 MiB body limit.
            let n = match rng.random_range(0..100) {
                0 => 1_000_000,
                1..=10 => 70_000,
                _ => 1_000,
            };
            let c = *['9', 'a', 'é', '😀', '"'].choose(rng).expect("not empty");
            let s: String = std::iter::repeat_n(c, n).collect();
            serde_json::to_string(&s).expect("a string serialises")
        }
        8 => {
            const TYPES: &[&str] =
                &["null", "true", "false", "[]", "{}", "[1,2,3]", "{\"a\":1}", "[null]", "{\"\":\"\"}"];
            (*TYPES.choose(rng).expect("not empty")).to_owned()
        }
        9 => {
            let depth = rng.random_range(1..=200);
            if rng.random_bool(0.5) {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
            }
        }
        10 => {
            // An id-like value beyond 2^53.
            let id = rng.random_range(9_007_199_254_740_993_u64..u64::MAX);
            if rng.random_bool(0.5) { id.to_string() } else { format!("\"{id}\"") }
        }
        _ => {
            // A small random structure.
            let items: Vec<String> = (0..rng.random_range(0..4)).map(|_| simple_fragment(rng)).collect();
            if rng.random_bool(0.5) {
                format!("[{}]", items.join(","))
            } else {
                let fields: Vec<String> = items.iter().enumerate().map(|(i, v)| format!("\"k{i}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }
        }
    }
}

/// A scalar fragment (no recursion into [`fragment`]'s containers).
fn simple_fragment(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => rng.random::<i64>().to_string(),
        1 => "null".to_owned(),
        2 => "\"x\"".to_owned(),
        _ => (RECEIVED_BASE_MS / 1000).to_string(),
    }
}

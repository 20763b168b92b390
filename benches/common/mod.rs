//! Helpers the benchmarks share: option parsing, percentiles, CPU and memory from /proc, and
//! the daemon launcher.

#[allow(dead_code)] // the outbound and startup benches start the daemon their own way
pub mod daemon;
#[allow(dead_code)] // the outbound, connections, startup and webhooks benches use their own clients
pub mod keepalive;

/// The kernel's clock tick for /proc/<pid>/stat CPU times (USER_HZ is 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A whole number option.
pub fn number(flag: &str, value: &str) -> Result<usize, String> {
    value.parse().map_err(|_| format!("{flag} takes a whole number, not `{value}`"))
}

/// A whole number option above 0.
pub fn positive(flag: &str, value: &str) -> Result<usize, String> {
    match number(flag, value)? {
        0 => Err(format!("{flag} must be above 0")),
        n => Ok(n),
    }
}

/// The `q` quantile (nearest rank) of sorted values; None when there are none.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// User + system CPU seconds of a process (`self` or a pid), or None off Linux.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated. utime and stime
    // are fields 14 and 15, i.e. the 12th and 13th after the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SEC)
}

/// The load generator's runtime: one thread, so that on a small machine the client takes no more
/// than its share from the servers it measures.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime can always be built")
}

/// Command-line options as `(flag, value)` pairs: `--flag value` or `--flag=value`; cargo's own
/// `--bench` is skipped. Every option takes a value.
pub fn flag_pairs(args: impl Iterator<Item = String>) -> Result<Vec<(String, String)>, String> {
    let mut args = args.peekable();
    let mut pairs = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue;
        }
        match arg.split_once('=') {
            Some((flag, value)) => pairs.push((flag.to_owned(), value.to_owned())),
            None => {
                let value = args.next().ok_or(format!("{arg} needs a value"))?;
                pairs.push((arg, value));
            }
        }
    }
    Ok(pairs)
}

/// A process's resident set now and at its peak (`VmRSS`, `VmHWM`), in MiB, or None off Linux.
pub fn resident_mib(pid: &str) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `resident_mib` as text for a report line.
pub fn resident_text(pid: u32) -> String {
    match resident_mib(&pid.to_string()) {
        Some((now, peak)) => format!("{now:.1} MiB (peak so far {peak:.1} MiB)"),
        None => "unknown (no /proc)".to_owned(),
    }
}

/// The four platform sections of a bench config, on, with every API base on a closed port (the
/// benches measure the inbound side; token checks fail quietly): WhatsApp signs with
/// `whatsapp_secret` for `phone_number_id`.
#[allow(dead_code)] // the outbound and connections benches configure their own platforms
pub fn offline_platforms(whatsapp_secret: &str, phone_number_id: &str) -> String {
    format!(
        r#"[facebook]
enabled = true
app_secret = "bench-facebook-app-secret"
verify_token = "bench-facebook-verify"
page_id = "104857600123456"
page_access_token = "bench-page-token"
api_base = "http://127.0.0.1:9/v23.0"

[whatsapp]
enabled = true
app_secret = "{whatsapp_secret}"
verify_token = "bench-whatsapp-verify"
phone_number_id = "{phone_number_id}"
access_token = "bench-wa-token"
api_base = "http://127.0.0.1:9/v23.0"

[viber]
enabled = true
bot_token = "bench-viber-bot-token"
bot_name = "Bench Support"
api_base = "http://127.0.0.1:9/pa"

[linkedin]
enabled = true
client_secret = "bench-linkedin-client-secret"
organization_id = "2414183"
api_base = "http://127.0.0.1:9"
oauth_base = "http://127.0.0.1:9/oauth/v2"
"#
    )
}

/// The config of the benches that drive ingest hard: all four platforms on with bench secrets
/// (`offline_platforms`), room for many connections and webhooks in flight, `warn` logging except
/// the `Listening.` line the launcher reads, the API token `bench-api-token-7c2e`.
#[allow(dead_code)] // the outbound, connections and startup benches configure their own
pub fn ingest_config(store: &std::path::Path, whatsapp_secret: &str, phone_number_id: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
max_connections = 4096
max_inflight_webhooks = 65536
shutdown_grace_secs = 5

[storage]
path = "{store}"

[api]
token = "bench-api-token-7c2e"

[log]
level = "warn,parley::app=info"

{platforms}"#,
        store = store.display(),
        platforms = offline_platforms(whatsapp_secret, phone_number_id),
    )
}

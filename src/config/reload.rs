//! What a configuration re-read on `SIGHUP` may change in a running daemon. Pure: the caller
//! loads the file (with the same layering as at start) and applies the plan.
//!
//! Keys are compared by a digest of their value (many values are secrets, so the values are
//! never kept for the comparison or logged). A changed key is either applied at once (it is in
//! [`LIVE_KEYS`]: signing secrets, verify tokens, access tokens, rates, the API token, the log
//! level, the `[outbound]` settings, the platforms' API addresses) or keeps its running value
//! until a restart (every other key: the listener, the store, enabling or disabling a platform,
//! connection limits, the accounts that name conversations, ...). A key nobody listed here needs
//! a restart, which is the safe default for keys added later.

use std::collections::BTreeMap;

use figment::value::Value;
use sha2::{Digest, Sha256};

use super::{Config, ConfigError, LoadedConfig, Setting, validate};

/// A digest of each key's value, to tell which keys changed between two loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFingerprints(BTreeMap<String, [u8; 32]>);

impl KeyFingerprints {
    /// One digest per leaf key of a figment value tree (`server.listen`, `facebook.app_secret`).
    pub(super) fn of(root: &Value) -> Self {
        let mut out = BTreeMap::new();
        collect(root, "", &mut out);
        KeyFingerprints(out)
    }

    /// Keys whose value differs, or that only one side has, in key order.
    pub fn changed(&self, other: &KeyFingerprints) -> Vec<String> {
        let mut keys: Vec<String> = self
            .0
            .iter()
            .filter(|(key, digest)| other.0.get(*key) != Some(*digest))
            .map(|(key, _)| key.clone())
            .collect();
        keys.extend(other.0.keys().filter(|key| !self.0.contains_key(*key)).cloned());
        keys.sort();
        keys
    }
}

fn collect(value: &Value, prefix: &str, out: &mut BTreeMap<String, [u8; 32]>) {
    if let Value::Dict(_, dict) = value {
        for (name, child) in dict {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            collect(child, &key, out);
        }
        return;
    }
    // The JSON form leaves out figment's tags, which differ from one load to the next.
    let rendered = serde_json::to_vec(value).unwrap_or_else(|_| format!("{value:?}").into_bytes());
    out.insert(prefix.to_owned(), Sha256::digest(&rendered).into());
}

/// A key that takes effect without a restart, and how to take its value from a new config.
struct LiveKey {
    key: &'static str,
    copy: fn(&mut Config, &Config),
}

/// `live!(section.field)`: the key `"section.field"`, copied from the new config as is.
macro_rules! live {
    ($section:ident . $field:ident) => {
        LiveKey {
            key: concat!(stringify!($section), ".", stringify!($field)),
            copy: |to, from| to.$section.$field = from.$section.$field.clone(),
        }
    };
}

/// Every key a reload applies at once. Who reads them: the HTTP front end reads its config per
/// request (secrets, verify tokens, the API token); the channel actors get new send settings
/// (`ChannelMsg::Reconfigure`: tokens, rates, `outbound.*` including `max_queued` and
/// `retry_deadline_secs`); the log filter is swapped.
const LIVE_KEYS: &[LiveKey] = &[
    live!(api.token),
    live!(api.session_hours),
    live!(log.level),
    live!(outbound.max_in_flight),
    live!(outbound.max_queued),
    live!(outbound.retry_deadline_secs),
    live!(outbound.initial_backoff_ms),
    live!(outbound.max_backoff_ms),
    live!(outbound.request_timeout_secs),
    live!(outbound.token_check_interval_secs),
    live!(facebook.app_id),
    live!(facebook.app_secret),
    live!(facebook.verify_token),
    live!(facebook.page_access_token),
    live!(facebook.user_access_token),
    live!(facebook.api_base),
    live!(facebook.rate_per_second),
    live!(whatsapp.app_secret),
    live!(whatsapp.verify_token),
    live!(whatsapp.access_token),
    live!(whatsapp.api_base),
    live!(whatsapp.rate_per_second),
    live!(whatsapp.per_recipient_interval_secs),
    live!(whatsapp.per_recipient_burst),
    live!(viber.bot_token),
    live!(viber.api_base),
    live!(viber.rate_per_minute),
    live!(linkedin.client_id),
    live!(linkedin.client_secret),
    live!(linkedin.access_token),
    live!(linkedin.refresh_token),
    live!(linkedin.api_base),
    live!(linkedin.oauth_base),
    live!(linkedin.api_version),
    live!(linkedin.rate_per_minute),
];

/// True when a change of `key` takes effect without a restart.
pub fn applies_live(key: &str) -> bool {
    LIVE_KEYS.iter().any(|live| live.key == key)
}

/// What a reload does.
#[derive(Debug, Clone)]
pub struct ReloadPlan {
    /// What the daemon runs on from now: the new value of every live key, the running value of
    /// every other key.
    pub config: Config,
    /// Changed keys that take effect now, in key order.
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until a restart, in key order.
    pub needs_restart: Vec<String>,
    /// What the next reload compares with: a key that still waits for a restart is reported again.
    pub running: LoadedConfig,
}

/// Plans the change from the `running` configuration to `new` (already loaded and validated).
/// `Err` when the mix of new live values and running restart-only values would be invalid (for
/// example a signing secret blanked in the same edit that turns its platform off): the daemon then
/// keeps running on the old configuration.
pub fn plan_reload(running: &LoadedConfig, new: LoadedConfig) -> Result<ReloadPlan, ConfigError> {
    let changed = running.fingerprints.changed(&new.fingerprints);
    let (applied, needs_restart): (Vec<String>, Vec<String>) = changed.into_iter().partition(|k| applies_live(k));

    let mut config = running.config.clone();
    for live in LIVE_KEYS {
        (live.copy)(&mut config, &new.config);
    }
    let source_of = |key: &str| source_in(&new.settings, key);
    let problems = validate(&config, &source_of);
    if !problems.is_empty() {
        let mut all = vec![format!(
            "the new file is valid on its own, but {} keep their running values until a restart, and with them it is not:",
            if needs_restart.is_empty() { "some keys".to_owned() } else { needs_restart.join(", ") }
        )];
        all.extend(problems);
        return Err(ConfigError { problems: all });
    }

    let mut fingerprints = new.fingerprints.0.clone();
    for key in &needs_restart {
        match running.fingerprints.0.get(key) {
            Some(digest) => fingerprints.insert(key.clone(), *digest),
            None => fingerprints.remove(key),
        };
    }
    let running =
        LoadedConfig { config: config.clone(), settings: new.settings, fingerprints: KeyFingerprints(fingerprints) };
    Ok(ReloadPlan { config, applied, needs_restart, running })
}

fn source_in(settings: &[Setting], key: &str) -> String {
    settings.iter().find(|s| s.key == key).map(|s| s.source.clone()).unwrap_or_else(|| "not set".into())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::load;

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8000"
[storage]
path = "store"
[api]
token = "api-token-one"
[facebook]
enabled = true
app_secret = "facebook-secret-one"
verify_token = "facebook-verify-one"
page_id = "104857600123456"
page_access_token = "page-token-one"
rate_per_second = 40
[viber]
enabled = true
bot_token = "viber-token-one"
bot_name = "Acme Support"
"#;

    fn load_text(dir: &Path, text: &str) -> Result<LoadedConfig, ConfigError> {
        let path: PathBuf = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn plan(old: &str, new: &str) -> Result<ReloadPlan, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let running = load_text(dir.path(), old).expect("the old config is valid");
        let new = load_text(dir.path(), new)?;
        plan_reload(&running, new)
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let plan = plan(BASE, BASE).unwrap();
        assert!(plan.applied.is_empty() && plan.needs_restart.is_empty(), "{plan:?}");
    }

    #[test]
    fn new_secrets_rates_and_the_log_level_apply_at_once() {
        let new = BASE
            .replace("facebook-secret-one", "facebook-secret-two")
            .replace("api-token-one", "api-token-two")
            .replace("rate_per_second = 40", "rate_per_second = 10")
            .replace("[viber]", "[log]\nlevel = \"parley=debug,info\"\n[viber]");
        let plan = plan(BASE, &new).unwrap();
        assert_eq!(plan.applied, ["api.token", "facebook.app_secret", "facebook.rate_per_second", "log.level"]);
        assert!(plan.needs_restart.is_empty());
        assert_eq!(plan.config.facebook.app_secret.expose(), "facebook-secret-two");
        assert!(plan.config.api.token.matches("api-token-two"));
        assert_eq!(plan.config.facebook.rate_per_second, 10);
        assert_eq!(plan.config.log.level, "parley=debug,info");
    }

    #[test]
    fn a_changed_receiver_list_waits_for_a_restart_and_the_running_receivers_stay() {
        let receiver = |name: &str| {
            format!(
                "\n[[webhooks]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:9/r\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
            )
        };
        let old = format!("{BASE}{}", receiver("test-crm"));
        let new = format!("{BASE}{}{}", receiver("test-crm"), receiver("test-bot"));
        assert!(plan(&old, &old).unwrap().needs_restart.is_empty());
        let plan = plan(&old, &new).unwrap();
        assert_eq!(plan.needs_restart, ["webhooks"]);
        assert!(plan.applied.is_empty());
        let names: Vec<&str> = plan.config.webhooks.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["test-crm"], "the running receivers are kept until a restart");
    }

    #[test]
    fn the_listener_store_and_enabled_platforms_wait_for_a_restart() {
        let new = BASE
            .replace("127.0.0.1:8000", "127.0.0.1:9000")
            .replace("path = \"store\"", "path = \"elsewhere\"")
            .replace("[viber]\nenabled = true", "[viber]\nenabled = false")
            .replace("[facebook]", "[outbound]\nmax_in_flight = 2\n[facebook]");
        let plan = plan(BASE, &new).unwrap();
        assert_eq!(plan.needs_restart, ["server.listen", "storage.path", "viber.enabled"]);
        assert_eq!(plan.applied, ["outbound.max_in_flight"]);
        assert_eq!(plan.config.server.listen.port(), 8000, "the running listener stays");
        assert!(plan.config.viber.enabled);
        assert!(plan.config.storage.path.ends_with("store"));
        assert_eq!(plan.config.outbound.max_in_flight, 2);
    }

    #[test]
    fn a_key_waiting_for_a_restart_is_reported_again_until_then() {
        let dir = tempfile::tempdir().unwrap();
        let running = load_text(dir.path(), BASE).unwrap();
        let moved = BASE.replace("127.0.0.1:8000", "127.0.0.1:9000");
        let first = plan_reload(&running, load_text(dir.path(), &moved).unwrap()).unwrap();
        assert_eq!(first.needs_restart, ["server.listen"]);
        let again = plan_reload(&first.running, load_text(dir.path(), &moved).unwrap()).unwrap();
        assert_eq!(again.needs_restart, ["server.listen"]);
        let back = plan_reload(&again.running, load_text(dir.path(), BASE).unwrap()).unwrap();
        assert!(back.needs_restart.is_empty() && back.applied.is_empty(), "{back:?}");
    }

    #[test]
    fn a_blanked_secret_of_a_platform_that_stays_on_until_restart_is_refused() {
        // Valid on its own (Viber is off in the new file), but Viber runs until a restart and
        // would then check signatures against an empty key.
        let new = BASE.replace("[viber]\nenabled = true", "[viber]\nenabled = false").replace("viber-token-one", "");
        let problems = plan(BASE, &new).unwrap_err().problems;
        assert!(problems[0].contains("viber.enabled"), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("viber.bot_token")), "{problems:?}");
    }

    #[test]
    fn every_live_key_exists_in_the_defaults() {
        use figment::providers::{Format, Toml};
        let defaults = figment::Figment::from(Toml::string(crate::config::DEFAULTS));
        let known = KeyFingerprints::of(&defaults.find_value("").unwrap());
        for live in LIVE_KEYS {
            assert!(known.0.contains_key(live.key), "{} is not a configuration key", live.key);
        }
    }

    #[test]
    fn fingerprints_never_hold_the_values() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_text(dir.path(), BASE).unwrap();
        let shown = format!("{:?}", loaded.fingerprints);
        assert!(!shown.contains("facebook-secret-one") && !shown.contains("api-token-one"));
    }
}

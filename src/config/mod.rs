//! Typed configuration: built-in defaults, then `config.toml`, then `PARLEY_<SECTION>__<KEY>`
//! variables, then the platform guides' variable names. Loaded and validated once at start; every
//! problem is reported as one line naming the key and where its value came from.

mod env;
mod reload;
mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use figment::value::Value;
use serde::{Deserialize, Deserializer};

use crate::model::Platform;
use crate::secret::Secret;

pub use env::LEGACY_VARIABLES;
pub use reload::{KeyFingerprints, ReloadPlan, applies_live, plan_reload};
pub use webhooks::WebhookConfig;

/// The shipped defaults, compiled in: the lowest layer and the reference for every key.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Secrets whose value starts with this are the shipped development secrets; the daemon warns
/// loudly at start while any is in use.
pub const DEVELOPMENT_SECRET_PREFIX: &str = "dev-only-";

/// Key names whose values are secrets (never printed).
const SECRET_KEYS: &[&str] = &[
    "token",
    "app_secret",
    "verify_token",
    "page_access_token",
    "access_token",
    "bot_token",
    "client_secret",
    "refresh_token",
    // `[[webhooks]]` receivers' signing secrets.
    "secret",
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub supervisor: SupervisorConfig,
    pub outbound: OutboundConfig,
    pub events: EventsConfig,
    pub facebook: FacebookConfig,
    pub whatsapp: WhatsappConfig,
    pub viber: ViberConfig,
    pub linkedin: LinkedinConfig,
    /// `[[webhooks]]`: receivers of outgoing webhooks; absent = none.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// `[server]`: the one HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// A new connection must complete its request headers within this of accept; a kept-alive
    /// one within this of the first byte of its next request.
    pub header_read_timeout_secs: u64,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// At this many open connections each new one closes the one waiting longest for a request.
    pub max_connections: usize,
    /// Webhooks being verified, parsed or stored at once; more get 503 with Retry-After.
    pub max_inflight_webhooks: usize,
    pub shutdown_grace_secs: u64,
}

/// `[storage]`: the sled database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Relative paths are resolved against the config file's folder by [`load`].
    pub path: PathBuf,
    pub cache_bytes: u64,
}

/// `[api]`: the operator API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token; empty means the API refuses every call.
    pub token: Secret,
    /// How long an inbox session lasts, in hours (1 to 8760).
    pub session_hours: u64,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `parley=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[supervisor]`: restarts of failed actors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// More restarts than this within `restart_window_secs` end the daemon with exit code 2.
    pub max_restarts: u32,
    pub restart_window_secs: u64,
    /// First restart delay; doubles per consecutive failure of the same child.
    pub restart_backoff_ms: u64,
    pub max_restart_backoff_ms: u64,
}

/// `[events]`: the live feed's event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Events older than this many days are pruned (in the background).
    pub retention_days: u32,
}

/// `[outbound]`: how channels send, for every platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Send requests in flight at once per channel (different conversations; one per conversation).
    pub max_in_flight: usize,
    /// Messages waiting per channel; beyond it the API answers 429.
    pub max_queued: usize,
    /// A temporary failure is retried until this long after the message was queued, then `failed`.
    pub retry_deadline_secs: u64,
    /// First retry delay; doubles per attempt, with jitter, up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// One send request may take this long (connect, send, answer).
    pub request_timeout_secs: u64,
    /// How often tokens are introspected (Meta `debug_token`, LinkedIn `introspectToken`).
    pub token_check_interval_secs: u64,
}

/// `[facebook]`: Messenger for one Page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacebookConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "string_or_integer")]
    pub app_id: String,
    pub app_secret: Secret,
    pub verify_token: Secret,
    #[serde(deserialize_with = "string_or_integer")]
    pub page_id: String,
    pub page_access_token: Secret,
    /// Optional short-lived user token: exchanged at start for a long-lived one (kept in the store).
    pub user_access_token: Secret,
    pub api_base: String,
    pub rate_per_second: u32,
}

/// `[whatsapp]`: the Cloud API for one phone number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "string_or_integer")]
    pub business_account_id: String,
    /// Falls back to `facebook.app_secret`: both products live in one Meta app.
    pub app_secret: Secret,
    pub verify_token: Secret,
    #[serde(deserialize_with = "string_or_integer")]
    pub phone_number_id: String,
    #[serde(deserialize_with = "string_or_integer")]
    pub phone_number: String,
    pub access_token: Secret,
    pub api_base: String,
    pub rate_per_second: u32,
    /// The pair limit: about one message per 6 s to one recipient, with short bursts allowed.
    pub per_recipient_interval_secs: u64,
    pub per_recipient_burst: u32,
}

/// `[viber]`: one bot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViberConfig {
    pub enabled: bool,
    /// The API credential, and the webhook HMAC key.
    pub bot_token: Secret,
    /// Shown as the sender of every message; also our account id in conversations.
    pub bot_name: String,
    pub api_base: String,
    pub rate_per_minute: u32,
}

/// `[linkedin]`: one organization's Company Page comment inbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedinConfig {
    pub enabled: bool,
    pub client_id: String,
    /// Signs webhooks and the GET challenge.
    pub client_secret: Secret,
    pub access_token: Secret,
    pub refresh_token: Secret,
    #[serde(deserialize_with = "string_or_integer")]
    pub organization_id: String,
    pub api_base: String,
    /// Where LinkedIn's OAuth endpoints live (`accessToken`, `introspectToken`).
    pub oauth_base: String,
    pub api_version: String,
    pub rate_per_minute: u32,
}

/// Accepts `page_id = 104857600123456` as well as the string form: ids are strings everywhere else.
fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(s) => s,
        Id::Unsigned(n) => n.to_string(),
        Id::Signed(n) => n.to_string(),
    })
}

impl Config {
    /// True when the platform's section is on.
    pub fn enabled(&self, platform: Platform) -> bool {
        match platform {
            Platform::Facebook => self.facebook.enabled,
            Platform::Whatsapp => self.whatsapp.enabled,
            Platform::Viber => self.viber.enabled,
            Platform::Linkedin => self.linkedin.enabled,
        }
    }

    /// The enabled platforms, in a fixed order.
    pub fn enabled_platforms(&self) -> Vec<Platform> {
        Platform::ALL.into_iter().filter(|p| self.enabled(*p)).collect()
    }

    /// The key that signs the platform's webhooks.
    pub fn signing_secret(&self, platform: Platform) -> &Secret {
        match platform {
            Platform::Facebook => &self.facebook.app_secret,
            Platform::Whatsapp => &self.whatsapp.app_secret,
            Platform::Viber => &self.viber.bot_token,
            Platform::Linkedin => &self.linkedin.client_secret,
        }
    }

    /// The secret the platform's GET handshake is checked against (Meta's verify token, LinkedIn's
    /// client secret); Viber has no handshake.
    pub fn handshake_secret(&self, platform: Platform) -> &Secret {
        match platform {
            Platform::Facebook => &self.facebook.verify_token,
            Platform::Whatsapp => &self.whatsapp.verify_token,
            Platform::Viber => &self.viber.bot_token,
            Platform::Linkedin => &self.linkedin.client_secret,
        }
    }

    /// Our account id on the platform, for bodies that do not name it (Viber).
    pub fn account_id(&self, platform: Platform) -> String {
        match platform {
            Platform::Facebook => self.facebook.page_id.clone(),
            Platform::Whatsapp => self.whatsapp.phone_number_id.clone(),
            Platform::Viber => self.viber.bot_name.clone(),
            Platform::Linkedin => format!("urn:li:organization:{}", self.linkedin.organization_id),
        }
    }

    /// Platforms that run on a shipped development secret.
    pub fn platforms_on_development_secrets(&self) -> Vec<Platform> {
        self.enabled_platforms()
            .into_iter()
            .filter(|p| {
                [self.signing_secret(*p), self.handshake_secret(*p)]
                    .iter()
                    .any(|s| s.expose().starts_with(DEVELOPMENT_SECRET_PREFIX))
            })
            .collect()
    }
}

/// One effective setting, for `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// The value as TOML would show it, or `[redacted]` / `""` for secrets.
    pub value: String,
    /// Where the value came from: `built-in default`, the file, or an environment variable.
    pub source: String,
}

/// A configuration that loaded and validated, with where each value came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub settings: Vec<Setting>,
    /// A digest of each key's value, for telling what a reload changed.
    pub fingerprints: KeyFingerprints,
}

/// Why the configuration cannot be used: one line per problem, each naming key and source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> Self {
        ConfigError { problems: vec![problem] }
    }
}

/// Loads `path` (which must exist) under the defaults and over it the environment, then validates.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::one(format!(
            "{}: configuration file not found (pass --config PATH, or run from the folder that holds config.toml)",
            path.display()
        )));
    }
    let file_name = format!("file {}", path.display());
    let mut figment = Figment::new()
        .merge(env::Named { provider: Toml::string(DEFAULTS), name: "built-in default".into() })
        .merge(env::Named { provider: Toml::file_exact(path), name: file_name });
    for variable in env::parley_variables().into_iter().chain(env::legacy_variables()) {
        figment = figment.merge(variable);
    }
    let mut config: Config = figment.extract_lossy().map_err(|e| figment_problems(&e))?;

    if config.whatsapp.app_secret.is_empty() {
        config.whatsapp.app_secret = config.facebook.app_secret.clone();
    }
    if config.storage.path.is_relative() {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        config.storage.path = folder.join(&config.storage.path);
    }

    let source_of = |key: &str| describe_source(&figment, key);
    let problems = validate(&config, &source_of);
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let mut settings = Vec::new();
    let mut fingerprints = KeyFingerprints::default();
    if let Ok(root) = figment.find_value("") {
        collect_settings(&figment, "", &root, &mut settings);
        fingerprints = KeyFingerprints::of(&root);
    }
    Ok(LoadedConfig { config, settings, fingerprints })
}

/// Checks what types alone cannot. `source_of(key)` says where a key's value came from.
fn validate(config: &Config, source_of: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut problems = Vec::new();
    let mut require = |ok: bool, key: &str, what: &str| {
        if !ok {
            problems.push(format!("{key} ({}): {what}", source_of(key)));
        }
    };
    let server = &config.server;
    require(server.max_body_bytes >= 1024, "server.max_body_bytes", "must be at least 1024");
    require(server.max_body_bytes <= 64 << 20, "server.max_body_bytes", "must be at most 67108864 (64 MiB)");
    require(server.header_read_timeout_secs > 0, "server.header_read_timeout_secs", "must be above 0");
    require(server.idle_timeout_secs > 0, "server.idle_timeout_secs", "must be above 0");
    require(server.request_timeout_secs > 0, "server.request_timeout_secs", "must be above 0");
    require(server.max_connections > 0, "server.max_connections", "must be above 0");
    require(server.max_inflight_webhooks > 0, "server.max_inflight_webhooks", "must be above 0");
    require((1..=8760).contains(&config.api.session_hours), "api.session_hours", "must be from 1 to 8760 (a year)");
    require(!config.storage.path.as_os_str().is_empty(), "storage.path", "must not be empty");
    require(config.storage.cache_bytes >= 1 << 20, "storage.cache_bytes", "must be at least 1048576 (1 MiB)");
    require(
        tracing_subscriber::EnvFilter::try_new(&config.log.level).is_ok(),
        "log.level",
        "is not a valid filter (try `info` or `parley=debug,info`)",
    );
    require(config.supervisor.max_restarts > 0, "supervisor.max_restarts", "must be above 0");
    require(config.supervisor.restart_window_secs > 0, "supervisor.restart_window_secs", "must be above 0");
    require(
        config.supervisor.max_restart_backoff_ms >= config.supervisor.restart_backoff_ms,
        "supervisor.max_restart_backoff_ms",
        "must be at least supervisor.restart_backoff_ms",
    );

    require(config.events.retention_days >= 1, "events.retention_days", "must be a whole number of days, at least 1");
    require(config.events.retention_days <= 36_500, "events.retention_days", "must be at most 36500 (100 years)");

    let out = &config.outbound;
    require(out.max_in_flight > 0, "outbound.max_in_flight", "must be above 0");
    require(out.max_queued > 0, "outbound.max_queued", "must be above 0");
    require(out.initial_backoff_ms > 0, "outbound.initial_backoff_ms", "must be above 0");
    require(
        out.max_backoff_ms >= out.initial_backoff_ms,
        "outbound.max_backoff_ms",
        "must be at least outbound.initial_backoff_ms",
    );
    require(out.request_timeout_secs > 0, "outbound.request_timeout_secs", "must be above 0");
    require(out.token_check_interval_secs >= 60, "outbound.token_check_interval_secs", "must be at least 60");
    require(config.whatsapp.per_recipient_interval_secs > 0, "whatsapp.per_recipient_interval_secs", "must be above 0");
    require(config.whatsapp.per_recipient_burst > 0, "whatsapp.per_recipient_burst", "must be above 0");
    require(
        config.viber.bot_name.chars().count() <= 28,
        "viber.bot_name",
        "must be at most 28 characters (Viber's limit)",
    );

    let enabled = |p: Platform| config.enabled(p);
    let mut required = |platform: Platform, key: &str, value_present: bool, why: &str| {
        if enabled(platform) && !value_present {
            let legacy =
                LEGACY_VARIABLES.iter().find(|(_, k)| *k == key).map(|(v, _)| format!(" or {v}")).unwrap_or_default();
            problems.push(format!(
                "{key} ({}): required while {platform}.enabled = true ({}): {why}; set it in config.toml, PARLEY_{}{legacy}, or turn {platform} off",
                source_of(key),
                source_of(&format!("{platform}.enabled")),
                key.to_ascii_uppercase().replace('.', "__"),
            ));
        }
    };
    let fb = &config.facebook;
    required(Platform::Facebook, "facebook.app_secret", !fb.app_secret.is_empty(), "it signs every webhook");
    required(Platform::Facebook, "facebook.verify_token", !fb.verify_token.is_empty(), "the GET handshake checks it");
    required(Platform::Facebook, "facebook.page_id", !fb.page_id.is_empty(), "it is the account of every conversation");
    let wa = &config.whatsapp;
    required(
        Platform::Whatsapp,
        "whatsapp.app_secret",
        !wa.app_secret.is_empty(),
        "it signs every webhook (facebook.app_secret is used when it is empty, and that is empty too)",
    );
    required(Platform::Whatsapp, "whatsapp.verify_token", !wa.verify_token.is_empty(), "the GET handshake checks it");
    required(
        Platform::Whatsapp,
        "whatsapp.phone_number_id",
        !wa.phone_number_id.is_empty(),
        "it is the account of every conversation",
    );
    let vb = &config.viber;
    required(Platform::Viber, "viber.bot_token", !vb.bot_token.is_empty(), "it signs every webhook");
    required(Platform::Viber, "viber.bot_name", !vb.bot_name.trim().is_empty(), "Viber requires a sender name");
    let li = &config.linkedin;
    required(
        Platform::Linkedin,
        "linkedin.client_secret",
        !li.client_secret.is_empty(),
        "it signs every webhook and the challenge",
    );
    required(
        Platform::Linkedin,
        "linkedin.organization_id",
        !li.organization_id.is_empty(),
        "it is the account of every conversation",
    );

    for (platform, key, base) in [
        (Platform::Facebook, "facebook.api_base", &fb.api_base),
        (Platform::Whatsapp, "whatsapp.api_base", &wa.api_base),
        (Platform::Viber, "viber.api_base", &vb.api_base),
        (Platform::Linkedin, "linkedin.api_base", &li.api_base),
        (Platform::Linkedin, "linkedin.oauth_base", &li.oauth_base),
    ] {
        let ok = reqwest::Url::parse(base).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
        if enabled(platform) && !ok {
            problems.push(format!("{key} ({}): `{base}` is not an http(s) URL", source_of(key)));
        }
    }
    for (platform, key, rate) in [
        (Platform::Facebook, "facebook.rate_per_second", fb.rate_per_second),
        (Platform::Whatsapp, "whatsapp.rate_per_second", wa.rate_per_second),
        (Platform::Viber, "viber.rate_per_minute", vb.rate_per_minute),
        (Platform::Linkedin, "linkedin.rate_per_minute", li.rate_per_minute),
    ] {
        if enabled(platform) && rate == 0 {
            problems.push(format!("{key} ({}): must be above 0", source_of(key)));
        }
    }
    let on_development_secrets = config.platforms_on_development_secrets();
    if !on_development_secrets.is_empty() && !config.server.listen.ip().is_loopback() {
        let names: Vec<String> = on_development_secrets.iter().map(ToString::to_string).collect();
        problems.push(format!(
            "server.listen ({}): {} is not a loopback address, but {} still use the shipped `{DEVELOPMENT_SECRET_PREFIX}` secrets, \
             which anyone can read; set real secrets first (README, Production)",
            source_of("server.listen"),
            config.server.listen,
            names.join(", ")
        ));
    }
    if config.linkedin.enabled && (li.api_version.len() != 6 || !li.api_version.bytes().all(|b| b.is_ascii_digit())) {
        problems.push(format!(
            "linkedin.api_version ({}): `{}` is not of the form YYYYMM",
            source_of("linkedin.api_version"),
            li.api_version
        ));
    }
    problems.extend(webhooks::validate(&config.webhooks, &source_of("webhooks")));
    problems
}

/// Where `key`'s value came from, in words.
fn describe_source(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map(|m| m.name.to_string()).unwrap_or_else(|| "not set".into())
}

/// One line per figment error, naming the key and its source.
fn figment_problems(error: &figment::Error) -> ConfigError {
    let problems = error
        .clone()
        .into_iter()
        .map(|e| {
            let key: Vec<&str> = e.path.iter().map(String::as_str).filter(|p| *p != "default").collect();
            let key = if key.is_empty() { "(top level)".to_owned() } else { key.join(".") };
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_else(|| "configuration".into());
            format!("{key} ({source}): {}", e.kind)
        })
        .collect();
    ConfigError { problems }
}

fn collect_settings(figment: &Figment, prefix: &str, value: &Value, out: &mut Vec<Setting>) {
    if let Value::Dict(_, dict) = value {
        for (name, child) in dict {
            let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            collect_settings(figment, &key, child, out);
        }
        return;
    }
    // A list of tables (`[[webhooks]]`): one line per key of each, as `webhooks[0].name`, so a
    // secret inside is redacted like any other.
    if let Value::Array(_, items) = value
        && items.iter().any(|item| matches!(item, Value::Dict(..)))
    {
        for (i, item) in items.iter().enumerate() {
            collect_settings(figment, &format!("{prefix}[{i}]"), item, out);
        }
        return;
    }
    let leaf = prefix.rsplit('.').next().unwrap_or(prefix);
    let shown = if SECRET_KEYS.contains(&leaf) {
        match value {
            Value::String(_, s) if s.is_empty() => "\"\"".to_owned(),
            _ => "[redacted]".to_owned(),
        }
    } else {
        match value {
            Value::String(_, s) => format!("{s:?}"),
            Value::Char(_, c) => format!("{:?}", c.to_string()),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(_, n) => {
                n.to_i128().map(|n| n.to_string()).or_else(|| n.to_f64().map(|f| f.to_string())).unwrap_or_default()
            }
            Value::Array(_, items) => {
                let shown: Vec<String> = items
                    .iter()
                    .map(|item| match item {
                        Value::String(_, s) => format!("{s:?}"),
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("[{}]", shown.join(", "))
            }
            other => format!("{other:?}"),
        }
    };
    let source = figment.get_metadata(value.tag()).map(|m| m.name.to_string()).unwrap_or_else(|| "unknown".into());
    out.push(Setting { key: prefix.to_owned(), value: shown, source });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_turn_every_platform_off() {
        let config: Config = Figment::from(Toml::string(DEFAULTS)).extract().unwrap();
        assert!(config.enabled_platforms().is_empty());
        assert_eq!(config.server.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(config.facebook.rate_per_second, 40);
    }

    #[test]
    fn secret_keys_cover_every_secret_field() {
        for key in
            ["api.token", "facebook.app_secret", "whatsapp.access_token", "viber.bot_token", "linkedin.refresh_token"]
        {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(SECRET_KEYS.contains(&leaf), "{key}");
        }
    }
}

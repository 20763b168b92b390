//! Environment variables as figment providers that always emit strings.
//!
//! figment's own `Env` provider parses values like TOML, so `PARLEY_WHATSAPP__PHONE_NUMBER_ID=0123`
//! would become the integer 123 (STACK.md §4). Every variable here is fed in as a string instead;
//! `extract_lossy` turns `"2048"` into a number where a number is wanted, and id fields stay exact.

use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider};

/// The platform setup guides' variable names, honoured so that an existing `.env` works unchanged
/// (CONTRACT.md, Configuration). They override everything else.
pub const LEGACY_VARIABLES: &[(&str, &str)] = &[
    ("FACEBOOK_APP_ID", "facebook.app_id"),
    ("FACEBOOK_APP_SECRET", "facebook.app_secret"),
    ("FACEBOOK_PAGE_ID", "facebook.page_id"),
    ("FACEBOOK_PAGE_ACCESS_TOKEN", "facebook.page_access_token"),
    ("FACEBOOK_WEBHOOK_VERIFY_TOKEN", "facebook.verify_token"),
    ("WHATSAPP_BUSINESS_ACCOUNT_ID", "whatsapp.business_account_id"),
    ("WHATSAPP_PHONE_NUMBER_ID", "whatsapp.phone_number_id"),
    ("WHATSAPP_PHONE_NUMBER", "whatsapp.phone_number"),
    ("WHATSAPP_ACCESS_TOKEN", "whatsapp.access_token"),
    ("WHATSAPP_WEBHOOK_VERIFY_TOKEN", "whatsapp.verify_token"),
    ("WHATSAPP_APP_SECRET", "whatsapp.app_secret"),
    ("VIBER_BOT_TOKEN", "viber.bot_token"),
    ("VIBER_BOT_NAME", "viber.bot_name"),
    ("LINKEDIN_CLIENT_ID", "linkedin.client_id"),
    ("LINKEDIN_CLIENT_SECRET", "linkedin.client_secret"),
    ("LINKEDIN_ACCESS_TOKEN", "linkedin.access_token"),
    ("LINKEDIN_REFRESH_TOKEN", "linkedin.refresh_token"),
    ("LINKEDIN_ORGANIZATION_ID", "linkedin.organization_id"),
    ("PARLEY_API_TOKEN", "api.token"),
];

/// The prefix of `PARLEY_<SECTION>__<KEY>` variables.
const PREFIX: &str = "PARLEY_";

/// One environment variable mapped to one configuration key, its value kept a string.
#[derive(Debug, Clone)]
pub struct EnvVariable {
    pub variable: String,
    pub key: String,
    pub value: String,
}

impl Provider for EnvVariable {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable `{}`", self.variable))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        figment::providers::Serialized::default(&self.key, &self.value).data()
    }
}

/// The `PARLEY_<SECTION>__<KEY>` variables present now, in name order. Variables without `__`
/// (such as `PARLEY_API_TOKEN`, a legacy name) are not section keys and are left to
/// [`legacy_variables`].
pub fn parley_variables() -> Vec<EnvVariable> {
    let mut found: Vec<EnvVariable> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            let rest = name.strip_prefix(PREFIX)?;
            if !rest.contains("__") {
                return None;
            }
            let key = rest.to_ascii_lowercase().replace("__", ".");
            Some(EnvVariable { key, value: value.to_string_lossy().into_owned(), variable: name })
        })
        .collect();
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found
}

/// The legacy variables present now, in the order of [`LEGACY_VARIABLES`]. An empty one counts as
/// unset: `.env` files from the setup guides often carry blank placeholders, which must not blank
/// out a value from config.toml.
pub fn legacy_variables() -> Vec<EnvVariable> {
    LEGACY_VARIABLES
        .iter()
        .filter_map(|(variable, key)| {
            let value = std::env::var_os(variable).filter(|v| !v.is_empty())?;
            Some(EnvVariable {
                variable: (*variable).to_owned(),
                key: (*key).to_owned(),
                value: value.to_string_lossy().into_owned(),
            })
        })
        .collect()
}

/// A provider with a name of our choosing (figment names a TOML string "TOML source string").
pub struct Named<P> {
    pub provider: P,
    pub name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        self.provider.data()
    }
}

//! Token upkeep: asking the platform whether the channel's token works, and getting a new one
//! where the platform allows (Meta's exchange of a user token for a long-lived Page token,
//! LinkedIn's refresh token). The shell over the pure request builders and answer readers of
//! the platform modules (`build_debug_token_request`, `parse_token_grant`, ...): it runs their
//! requests and turns the answers into a `TokenCheck` for the channel actor, which keeps the
//! token and has a new one stored.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::TokenCheck;
use super::channel::SendSettings;
use crate::model::Timestamp;
use crate::outbound;
use crate::platform;
use crate::secret::Secret;
use crate::store::StoredToken;

/// LinkedIn access tokens are refreshed when they expire sooner than this.
const REFRESH_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a channel gets and checks its credential.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenSource {
    /// Graph API: `debug_token` with the app token; an optional short-lived user token is exchanged
    /// for a long-lived one and used to fetch a never-expiring Page token.
    Meta { app_id: String, app_secret: Secret, user_access_token: Secret, page_id: Option<String> },
    /// Viber: the bot token never expires; `get_account_info` tells whether it works.
    Viber,
    /// LinkedIn: `introspectToken`, and `accessToken` with the refresh token.
    Linkedin { oauth_base: String, client_id: String, client_secret: Secret, refresh_token: Secret },
}

/// A fingerprint of the configured token: a stored token derived from another one is stale.
pub fn fingerprint(secret: &Secret) -> String {
    platform::encode_hex(&Sha256::digest(secret.expose().as_bytes())[..8])
}

/// Asks the platform about the token, refreshing it where the platform allows and it is due.
pub async fn check(
    client: &reqwest::Client,
    settings: &SendSettings,
    token: &Secret,
    expires_at: Option<Timestamp>,
    after_rejection: bool,
) -> TokenCheck {
    use crate::platform::{facebook, linkedin, viber};
    let now = Timestamp::now();
    let derived_from = fingerprint(&settings.token);
    match &settings.token_source {
        TokenSource::Meta { app_id, app_secret, user_access_token, page_id } => {
            let mut replacement = None;
            let mut current = token.clone();
            if !user_access_token.is_empty() && (after_rejection || current.is_empty()) {
                match exchange_meta_token(client, settings, app_id, app_secret, user_access_token, page_id.as_deref())
                    .await
                {
                    Ok(page_token) => {
                        current = page_token.clone();
                        replacement = Some(StoredToken {
                            access_token: page_token.clone(),
                            expires_at: None,
                            refresh_token: None,
                            refresh_expires_at: None,
                            derived_from: derived_from.clone(),
                            obtained_at: now,
                        });
                    }
                    Err(check) => return check,
                }
            }
            if app_id.is_empty() {
                return match replacement {
                    Some(r) => TokenCheck::Valid { expires_at: None, replacement: Some(r) },
                    None => TokenCheck::NotChecked,
                };
            }
            let request = facebook::build_debug_token_request(&settings.api_base, &current, app_id, app_secret);
            match outbound::execute(client, &request).await {
                Ok(response) => match facebook::parse_debug_token(&response) {
                    Ok(status) if status.valid => TokenCheck::Valid { expires_at: status.expires_at, replacement },
                    Ok(_) => TokenCheck::Invalid("debug_token says the access token is not valid".into()),
                    Err(e) if response.status >= 500 => TokenCheck::Unreachable(e.to_string()),
                    // The call itself was refused: our app credentials (app id and secret) do not
                    // fit, which says nothing about the access token.
                    Err(e) => {
                        tracing::warn!(message = "debug_token refused the app id and secret; token expiry unknown.", reason = %e);
                        match replacement {
                            Some(r) => TokenCheck::Valid { expires_at: None, replacement: Some(r) },
                            None => TokenCheck::NotChecked,
                        }
                    }
                },
                Err(e) => TokenCheck::Unreachable(e.to_string()),
            }
        }
        TokenSource::Viber => {
            let request = viber::build_account_info_request(&settings.api_base, token);
            match outbound::execute(client, &request).await {
                Ok(response) => match viber::parse_account_info(&response) {
                    Ok(_) => TokenCheck::Valid { expires_at: None, replacement: None },
                    Err(e) if response.status >= 500 => TokenCheck::Unreachable(e.to_string()),
                    Err(e) => TokenCheck::Invalid(e.to_string()),
                },
                Err(e) => TokenCheck::Unreachable(e.to_string()),
            }
        }
        TokenSource::Linkedin { oauth_base, client_id, client_secret, refresh_token } => {
            if client_id.is_empty() {
                return TokenCheck::NotChecked;
            }
            let soon = |at: Option<Timestamp>| {
                at.is_some_and(|at| at.as_millis() - now.as_millis() < REFRESH_BEFORE.as_millis() as i64)
            };
            let mut status_expires = expires_at;
            if !after_rejection {
                let request = linkedin::build_introspect_request(oauth_base, client_id, client_secret, token);
                match outbound::execute(client, &request).await {
                    Ok(response) => match linkedin::parse_introspection(&response) {
                        Ok(status) if status.valid && !soon(status.expires_at) => {
                            return TokenCheck::Valid { expires_at: status.expires_at, replacement: None };
                        }
                        Ok(status) => status_expires = status.expires_at.or(status_expires),
                        Err(e) if response.status >= 500 => return TokenCheck::Unreachable(e.to_string()),
                        Err(e) => return TokenCheck::Invalid(e.to_string()),
                    },
                    Err(e) => return TokenCheck::Unreachable(e.to_string()),
                }
            }
            if refresh_token.is_empty() {
                return TokenCheck::Invalid(
                    "the access token is expired, revoked or expiring, and no refresh token is configured".into(),
                );
            }
            let _ = status_expires;
            let request = linkedin::build_refresh_request(oauth_base, client_id, client_secret, refresh_token);
            match outbound::execute(client, &request).await {
                Ok(response) => match linkedin::parse_token_grant(&response) {
                    Ok(grant) => {
                        let expires_at = grant.expires_in.map(|s| {
                            now.saturating_add_millis(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000))
                        });
                        let stored = StoredToken {
                            access_token: grant.access_token,
                            expires_at,
                            refresh_token: grant.refresh_token,
                            refresh_expires_at: grant.refresh_token_expires_in.map(|s| {
                                now.saturating_add_millis(i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000))
                            }),
                            derived_from,
                            obtained_at: now,
                        };
                        TokenCheck::Valid { expires_at, replacement: Some(stored) }
                    }
                    Err(e) if response.status >= 500 => TokenCheck::Unreachable(e.to_string()),
                    Err(e) => TokenCheck::Invalid(format!("refresh failed: {e}")),
                },
                Err(e) => TokenCheck::Unreachable(e.to_string()),
            }
        }
    }
}

/// Meta: short-lived user token → long-lived user token → the Page's token (which then never
/// expires). For WhatsApp (no page id) the long-lived token itself is used.
async fn exchange_meta_token(
    client: &reqwest::Client,
    settings: &SendSettings,
    app_id: &str,
    app_secret: &Secret,
    user_token: &Secret,
    page_id: Option<&str>,
) -> Result<Secret, TokenCheck> {
    use crate::platform::facebook;
    let request = facebook::build_token_exchange_request(&settings.api_base, app_id, app_secret, user_token);
    let response = outbound::execute(client, &request).await.map_err(|e| TokenCheck::Unreachable(e.to_string()))?;
    let grant = facebook::parse_token_grant(&response)
        .map_err(|e| TokenCheck::Invalid(format!("token exchange failed: {e}")))?;
    let Some(page_id) = page_id else { return Ok(grant.access_token) };
    let request = facebook::build_page_token_request(&settings.api_base, page_id, &grant.access_token);
    let response = outbound::execute(client, &request).await.map_err(|e| TokenCheck::Unreachable(e.to_string()))?;
    facebook::parse_page_token(&response).map_err(|e| TokenCheck::Invalid(format!("page token request failed: {e}")))
}

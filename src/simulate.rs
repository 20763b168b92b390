//! `parley simulate`: sends one correctly signed, realistic webhook of a platform to a running
//! daemon, with the secrets from the same config, so an operator can test an install without a
//! phone or a tunnel. The bodies come from [`crate::sandbox::webhooks`], shared with the sandbox.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use rand::Rng;

use crate::app::{EXIT_BAD_CONFIG, EXIT_RUNTIME};
use crate::config::{self, Config};
use crate::model::{Platform, Timestamp};
use crate::platform;
use crate::sandbox::webhooks::{self, LinkedinComment, WhatsappNumber};

/// The text of a simulated message when `--text` is not given.
pub const DEFAULT_TEXT: &str = "Hello from parley simulate";

/// The post simulated LinkedIn comments go under (one thread for all of them).
const LINKEDIN_POST: &str = "urn:li:activity:7190000000000000001";

/// Which event to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Event {
    /// A text message from the contact (a comment on LinkedIn).
    Text,
    /// An image from the contact.
    Image,
    /// A postback button tap (facebook).
    Postback,
    /// A delivery receipt for our message --message-id (whatsapp: a `delivered` status).
    Delivery,
    /// A read receipt (whatsapp: a `read` status; viber: `seen`).
    Read,
    /// A WhatsApp `delivered` status for --message-id.
    Status,
    /// The contact subscribed (viber).
    Subscribed,
    /// A comment on the organization's post (linkedin).
    Comment,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Text => "text",
            Event::Image => "image",
            Event::Postback => "postback",
            Event::Delivery => "delivery",
            Event::Read => "read",
            Event::Status => "status",
            Event::Subscribed => "subscribed",
            Event::Comment => "comment",
        }
    }
}

/// The command line of `parley simulate`.
#[derive(Clone, Debug)]
pub struct SimulateArgs {
    pub platform: Platform,
    pub text: Option<String>,
    pub from: Option<String>,
    pub url: Option<String>,
    pub event: Option<Event>,
    pub message_id: Option<String>,
    pub config: PathBuf,
}

/// A bad argument: one line naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

/// The events each platform has.
fn events_of(platform: Platform) -> &'static [Event] {
    match platform {
        Platform::Facebook => &[Event::Text, Event::Image, Event::Postback, Event::Delivery, Event::Read],
        Platform::Whatsapp => &[Event::Text, Event::Image, Event::Status, Event::Delivery, Event::Read],
        Platform::Viber => &[Event::Text, Event::Image, Event::Delivery, Event::Read, Event::Subscribed],
        Platform::Linkedin => &[Event::Comment, Event::Text],
    }
}

/// The sender when `--from` is not given: a realistic id of each platform's kind.
pub fn default_sender(platform: Platform) -> &'static str {
    match platform {
        Platform::Facebook => "7212345678901234",
        Platform::Whatsapp => "5511987654321",
        Platform::Viber => "pttm25kSGUo1919sBORWyA==",
        Platform::Linkedin => "urn:li:person:AbC123xYz",
    }
}

/// Builds the body for `args` against `config`, stamped `now`. Pure apart from random ids.
pub fn build_body(config: &Config, args: &SimulateArgs, now: Timestamp) -> Result<String, InputError> {
    let platform = args.platform;
    let event = args.event.unwrap_or(if platform == Platform::Linkedin { Event::Comment } else { Event::Text });
    if !events_of(platform).contains(&event) {
        let allowed: Vec<&str> = events_of(platform).iter().map(|e| e.name()).collect();
        return Err(InputError(format!(
            "--event: `{}` does not exist on {platform} (choose one of: {})",
            event.name(),
            allowed.join(", ")
        )));
    }
    let receipt = matches!(event, Event::Delivery | Event::Read | Event::Status);
    let needs_message_id = receipt && matches!(platform, Platform::Whatsapp | Platform::Viber);
    let message_id = args.message_id.as_deref().filter(|m| !m.is_empty());
    if needs_message_id && message_id.is_none() {
        return Err(InputError(format!(
            "--message-id: required for a {platform} {} event (the id of the message it reports on)",
            event.name()
        )));
    }
    let text = args.text.as_deref().unwrap_or(DEFAULT_TEXT);
    let from = args.from.as_deref().unwrap_or(default_sender(platform));
    let ms = now.as_millis();
    let mut rng = rand::rng();
    let mut unique = |prefix: &str| format!("{prefix}{:016x}", rng.random::<u64>());
    let body = match platform {
        Platform::Facebook => {
            let page = config.facebook.page_id.as_str();
            match event {
                Event::Text => webhooks::messenger_text(page, from, &unique("m_sim_"), text, ms),
                Event::Image => webhooks::messenger_image(
                    page,
                    from,
                    &unique("m_sim_"),
                    "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=parley-simulate",
                    ms,
                ),
                Event::Postback => webhooks::messenger_postback(page, from, &unique("m_sim_"), text, "GET_STARTED", ms),
                Event::Delivery => {
                    let mids: Vec<&str> = message_id.into_iter().collect();
                    webhooks::messenger_delivery(page, from, &mids, ms, ms)
                }
                _ => webhooks::messenger_read(page, from, ms, ms),
            }
        }
        Platform::Whatsapp => {
            let number = WhatsappNumber {
                business_account_id: &config.whatsapp.business_account_id,
                phone_number_id: &config.whatsapp.phone_number_id,
                display_phone_number: &config.whatsapp.phone_number,
            };
            let secs = now.as_millis().div_euclid(1000);
            let name = "Parley Simulate";
            let message_id = message_id.unwrap_or_default();
            match event {
                Event::Text => webhooks::whatsapp_text(&number, from, name, &unique("wamid.SIM"), text, secs),
                Event::Image => {
                    let media_id = rng_digits(16);
                    let caption = args.text.as_deref();
                    webhooks::whatsapp_image(&number, from, name, &unique("wamid.SIM"), &media_id, caption, secs)
                }
                Event::Read => webhooks::whatsapp_status(&number, message_id, "read", from, secs),
                _ => webhooks::whatsapp_status(&number, message_id, "delivered", from, secs),
            }
        }
        Platform::Viber => {
            let token = rand::rng().random_range(5_000_000_000_000_000_000..6_000_000_000_000_000_000u64);
            let receipt_token = || {
                message_id.unwrap_or_default().parse::<u64>().map_err(|_| {
                    InputError("--message-id: a Viber message_token is a number (e.g. 5741311803571721087)".into())
                })
            };
            let name = "Parley Simulate";
            match event {
                Event::Text => webhooks::viber_text(token, from, name, text, ms),
                Event::Image => webhooks::viber_picture(
                    token,
                    from,
                    name,
                    "https://dl-media.viber.com/parley-simulate/photo.jpg",
                    args.text.as_deref(),
                    ms,
                ),
                Event::Subscribed => webhooks::viber_subscribed(token, from, name, ms),
                Event::Delivery => webhooks::viber_delivered(receipt_token()?, from, ms),
                _ => webhooks::viber_seen(receipt_token()?, from, ms),
            }
        }
        Platform::Linkedin => {
            let commenter = if from.starts_with("urn:") { from.to_owned() } else { format!("urn:li:person:{from}") };
            let mut rng = rand::rng();
            webhooks::linkedin_comment(&LinkedinComment {
                organization_id: &config.linkedin.organization_id,
                notification_id: rng.random_range(1_000_000_000..9_000_000_000_000u64),
                post_urn: LINKEDIN_POST,
                comment_id: rng.random_range(7_190_000_000_000_000_000..7_200_000_000_000_000_000u64),
                commenter_urn: &commenter,
                text,
                at_ms: ms,
            })
        }
    };
    Ok(body)
}

fn rng_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|i| char::from(b'0' + if i == 0 { rng.random_range(1..10) } else { rng.random_range(0..10) }))
        .collect()
}

/// The signature header (name, value) the platform would send with `body`.
pub fn signature(config: &Config, platform: Platform, body: &[u8]) -> (&'static str, String) {
    let secret = config.signing_secret(platform);
    let value = match platform {
        Platform::Facebook => platform::facebook::sign_webhook(secret, body),
        Platform::Whatsapp => platform::whatsapp::sign_webhook(secret, body),
        Platform::Viber => platform::viber::sign_webhook(secret, body),
        Platform::Linkedin => platform::linkedin::sign_webhook(secret, body),
    };
    (platform::signature_header(platform), value)
}

/// `parley simulate`: 0 when the daemon answered 2xx, 1 for bad input or config, 2 when the daemon
/// is unreachable or refused the webhook.
pub fn run(args: SimulateArgs) -> ExitCode {
    let loaded = match config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("parley simulate: configuration error: {problem}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let config = loaded.config;
    let platform = args.platform;
    if !config.enabled(platform) {
        eprintln!(
            "parley simulate: PLATFORM: {platform} is not enabled in {} (set {platform}.enabled = true)",
            args.config.display()
        );
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let body = match build_body(&config, &args, Timestamp::now()) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("parley simulate: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match crate::sandbox::daemon_url(&config, None) {
            Ok(base) => format!("{base}/webhooks/{platform}"),
            Err(problem) => {
                eprintln!("parley simulate: server.listen: {problem}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
    };
    if reqwest::Url::parse(&url).is_err() {
        eprintln!("parley simulate: --url: `{url}` is not a URL");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let (header, value) = signature(&config, platform, body.as_bytes());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley simulate: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let sent = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let response = client
            .post(&url)
            .header(header, value)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, text))
    });
    match sent {
        Ok((status, text)) => {
            println!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
            if !text.is_empty() {
                println!("{text}");
            }
            if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
        }
        Err(e) => {
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                cause = format!("{cause}: {inner}");
                source = inner.source();
            }
            eprintln!("parley simulate: cannot reach the daemon at {url} ({cause}); is `parley serve` running?");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;
    use crate::model::EventKind;
    use crate::platform::{ParseContext, SignedRequest};

    fn config() -> Config {
        let overrides = r#"
[facebook]
enabled = true
app_secret = "fb"
verify_token = "v"
page_id = "104857600123456"
[whatsapp]
enabled = true
app_secret = "wa"
verify_token = "v"
phone_number_id = "106540352242922"
[viber]
enabled = true
bot_token = "vb"
bot_name = "Acme"
[linkedin]
enabled = true
client_secret = "li"
organization_id = "2414183"
"#;
        Figment::from(Toml::string(crate::config::DEFAULTS)).merge(Toml::string(overrides)).extract().unwrap()
    }

    fn args(platform: Platform, event: Option<Event>, message_id: Option<&str>) -> SimulateArgs {
        SimulateArgs {
            platform,
            text: None,
            from: None,
            url: None,
            event,
            message_id: message_id.map(str::to_owned),
            config: PathBuf::from("config.toml"),
        }
    }

    #[test]
    fn every_allowed_event_is_signed_and_parses() {
        let config = config();
        for platform in Platform::ALL {
            for event in events_of(platform) {
                let message_id = match platform {
                    Platform::Viber => "5741311803571721087",
                    _ => "wamid.OUT1",
                };
                let args = args(platform, Some(*event), Some(message_id));
                let body = build_body(&config, &args, Timestamp::now()).unwrap();
                let (_, value) = signature(&config, platform, body.as_bytes());
                let request = SignedRequest { signature_header: Some(&value), query: None, body: body.as_bytes() };
                platform::verify_signature(platform, config.signing_secret(platform), &request).unwrap();
                let account = config.account_id(platform);
                let ctx = ParseContext { account_id: &account, received_at: Timestamp::now() };
                let events = platform::parse_webhook(platform, body.as_bytes(), &ctx).unwrap();
                assert_eq!(events.len(), 1, "{platform} {event:?}");
                assert!(!matches!(events[0].kind, EventKind::Unknown { .. }), "{platform} {event:?}: {body}");
            }
        }
    }

    #[test]
    fn the_default_event_is_a_text_with_a_unique_id() {
        let config = config();
        let a = build_body(&config, &args(Platform::Facebook, None, None), Timestamp::now()).unwrap();
        let b = build_body(&config, &args(Platform::Facebook, None, None), Timestamp::now()).unwrap();
        assert!(a.contains(DEFAULT_TEXT));
        assert_ne!(a, b);
    }

    #[test]
    fn events_that_do_not_fit_and_missing_ids_name_the_argument() {
        let config = config();
        let wrong = build_body(&config, &args(Platform::Whatsapp, Some(Event::Postback), None), Timestamp::now());
        assert!(wrong.unwrap_err().0.starts_with("--event:"));
        let missing = build_body(&config, &args(Platform::Viber, Some(Event::Delivery), None), Timestamp::now());
        assert!(missing.unwrap_err().0.starts_with("--message-id:"));
        let not_a_number =
            build_body(&config, &args(Platform::Viber, Some(Event::Read), Some("abc")), Timestamp::now());
        assert!(not_a_number.unwrap_err().0.starts_with("--message-id:"));
        // Messenger's delivery may go without mids.
        assert!(build_body(&config, &args(Platform::Facebook, Some(Event::Delivery), None), Timestamp::now()).is_ok());
    }
}

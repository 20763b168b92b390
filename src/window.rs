//! Messaging windows: when a platform lets a business write to a person, from when the person
//! last wrote (pure: `now` is passed in).
//!
//! - WhatsApp: free messages for 24 hours after the customer's last message (the customer service
//!   window); outside it, only templates (Meta error 131047 otherwise).
//! - Messenger: 24 hours (the standard window); then, up to 7 days after the person's last message,
//!   only a reply a person wrote, sent with the `HUMAN_AGENT` tag (the API's `"human_agent": true`);
//!   after that, nothing (error 10/2018278). A person who never wrote cannot be messaged.
//! - Viber and LinkedIn comments: no window (Viber bills bot messages outside a 24-hour session
//!   but delivers them to subscribed users; unsubscribed users are refused by Viber itself).

use serde::{Deserialize, Serialize};

use crate::model::{Platform, Timestamp};

const HOUR_MS: i64 = 3_600_000;
/// WhatsApp's customer service window, and Messenger's standard window.
pub const STANDARD_WINDOW_MS: i64 = 24 * HOUR_MS;
/// How long after the person's last message Messenger takes a `HUMAN_AGENT` reply.
pub const HUMAN_AGENT_WINDOW_MS: i64 = 7 * 24 * HOUR_MS;

/// A conversation's window as the API shows it: `{"open_until", "outside"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When free messages stop being allowed (null: the person never wrote).
    pub open_until: Option<Timestamp>,
    /// What is allowed now that the window is closed; null while it is open.
    pub outside: Option<Outside>,
}

/// What a platform allows outside its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outside {
    /// WhatsApp: only templates.
    TemplateOnly,
    /// Messenger, within 7 days: only a person's reply, with `human_agent: true`.
    HumanAgent,
    /// Nothing.
    Closed,
}

/// The window of a conversation on `platform` whose person last wrote at `last_inbound_at`;
/// None for platforms without one.
pub fn window(platform: Platform, last_inbound_at: Option<Timestamp>, now: Timestamp) -> Option<Window> {
    let open_until = last_inbound_at.map(|at| at.saturating_add_millis(STANDARD_WINDOW_MS));
    let open = open_until.is_some_and(|until| now < until);
    let outside = match platform {
        Platform::Whatsapp => (!open).then_some(Outside::TemplateOnly),
        Platform::Facebook => {
            let human_agent_until = last_inbound_at.map(|at| at.saturating_add_millis(HUMAN_AGENT_WINDOW_MS));
            match (open, human_agent_until) {
                (true, _) => None,
                (false, Some(until)) if now < until => Some(Outside::HumanAgent),
                (false, _) => Some(Outside::Closed),
            }
        }
        Platform::Viber | Platform::Linkedin => return None,
    };
    Some(Window { open_until, outside })
}

/// When the customer last wrote, as a refusal says it.
pub fn since(last_inbound_at: Option<Timestamp>) -> String {
    match last_inbound_at {
        Some(at) => format!("the customer last wrote at {at}"),
        None => "the customer has not written".to_owned(),
    }
}

/// What a reply is, as far as windows care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyKind {
    pub template: bool,
    /// A person wrote it and asks for Messenger's `HUMAN_AGENT` tag.
    pub human_agent: bool,
}

/// Whether `reply` may go now; the refusal says what is allowed instead (the API's 422
/// `window_closed`).
pub fn check(
    platform: Platform,
    last_inbound_at: Option<Timestamp>,
    now: Timestamp,
    reply: ReplyKind,
) -> Result<(), String> {
    let Some(window) = window(platform, last_inbound_at, now) else { return Ok(()) };
    let since = since(last_inbound_at);
    match (window.outside, platform) {
        (None, _) => Ok(()),
        (Some(Outside::TemplateOnly), _) if reply.template => Ok(()),
        (Some(Outside::TemplateOnly), _) => Err(format!(
            "outside WhatsApp's 24-hour customer service window ({since}): only a template can be sent until they write again"
        )),
        (Some(Outside::HumanAgent), _) if reply.human_agent => Ok(()),
        (Some(Outside::HumanAgent), _) => Err(format!(
            "outside Messenger's 24-hour window ({since}): within 7 days only a reply a person wrote may go, with \"human_agent\": true"
        )),
        (Some(Outside::Closed), _) => Err(format!(
            "Messenger allows no message now ({since}; a reply may go up to 7 days after their last message)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WROTE: Timestamp = Timestamp::from_millis(1_718_000_000_000);

    fn after(ms: i64) -> Timestamp {
        WROTE.saturating_add_millis(ms)
    }

    const TEXT: ReplyKind = ReplyKind { template: false, human_agent: false };
    const TEMPLATE: ReplyKind = ReplyKind { template: true, human_agent: false };
    const PERSON: ReplyKind = ReplyKind { template: false, human_agent: true };

    #[test]
    fn whatsapp_takes_free_text_for_24_hours_then_only_templates() {
        let open_until = Some(after(STANDARD_WINDOW_MS));
        let inside = window(Platform::Whatsapp, Some(WROTE), after(STANDARD_WINDOW_MS - 1));
        assert_eq!(inside, Some(Window { open_until, outside: None }));
        let outside = window(Platform::Whatsapp, Some(WROTE), after(STANDARD_WINDOW_MS));
        assert_eq!(outside, Some(Window { open_until, outside: Some(Outside::TemplateOnly) }));
        assert!(check(Platform::Whatsapp, Some(WROTE), after(HOUR_MS), TEXT).is_ok());
        let refused = check(Platform::Whatsapp, Some(WROTE), after(STANDARD_WINDOW_MS), TEXT).unwrap_err();
        assert!(refused.contains("only a template") && refused.contains("2024-06-10T06:13:20.000Z"), "{refused}");
        assert!(check(Platform::Whatsapp, Some(WROTE), after(30 * STANDARD_WINDOW_MS), TEMPLATE).is_ok());
        // Nobody wrote yet (a conversation the operator starts): templates only.
        assert_eq!(
            window(Platform::Whatsapp, None, WROTE),
            Some(Window { open_until: None, outside: Some(Outside::TemplateOnly) })
        );
        assert!(check(Platform::Whatsapp, None, WROTE, TEXT).unwrap_err().contains("has not written"));
        assert!(check(Platform::Whatsapp, None, WROTE, TEMPLATE).is_ok());
    }

    #[test]
    fn messenger_has_24_hours_then_human_agent_replies_until_7_days_then_nothing() {
        assert_eq!(window(Platform::Facebook, Some(WROTE), after(HOUR_MS)).unwrap().outside, None);
        assert!(check(Platform::Facebook, Some(WROTE), after(HOUR_MS), TEXT).is_ok());
        assert!(check(Platform::Facebook, Some(WROTE), after(HOUR_MS), PERSON).is_ok());
        let day_two = after(STANDARD_WINDOW_MS + HOUR_MS);
        assert_eq!(window(Platform::Facebook, Some(WROTE), day_two).unwrap().outside, Some(Outside::HumanAgent));
        assert!(check(Platform::Facebook, Some(WROTE), day_two, TEXT).unwrap_err().contains("human_agent"));
        assert!(check(Platform::Facebook, Some(WROTE), day_two, PERSON).is_ok());
        let day_eight = after(HUMAN_AGENT_WINDOW_MS);
        assert_eq!(window(Platform::Facebook, Some(WROTE), day_eight).unwrap().outside, Some(Outside::Closed));
        assert!(check(Platform::Facebook, Some(WROTE), day_eight, PERSON).is_err());
        assert_eq!(window(Platform::Facebook, None, WROTE).unwrap().outside, Some(Outside::Closed));
    }

    #[test]
    fn viber_and_linkedin_have_no_window() {
        for platform in [Platform::Viber, Platform::Linkedin] {
            assert_eq!(window(platform, None, WROTE), None);
            assert!(check(platform, None, after(HUMAN_AGENT_WINDOW_MS * 10), TEXT).is_ok());
        }
    }

    #[test]
    fn a_window_is_json_with_snake_case_names() {
        let json =
            serde_json::to_value(window(Platform::Facebook, Some(WROTE), after(STANDARD_WINDOW_MS)).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({ "open_until": "2024-06-11T06:13:20.000Z", "outside": "human_agent" }));
    }
}

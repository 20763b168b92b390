//! Webhook bodies exactly as each platform sends them (PLATFORMS.md 1.3, 2.3, 3.3, 4.3): used by the
//! sandbox for delivery and read receipts and by `parley simulate` for inbound events.
//!
//! The bodies are written field by field rather than through `serde_json::json!`, so the keys come in
//! the platforms' own order, Meta's bodies escape non-ASCII as `\uXXXX` as Meta does on the wire, and
//! Viber's 64-bit `message_token` is a raw JSON number, never a double.

use std::fmt::Write as _;

/// A JSON string literal; with `ascii_only`, every non-ASCII character escaped as `\uXXXX` (UTF-16).
fn string(text: &str, ascii_only: bool) -> String {
    let plain = serde_json::to_string(text).expect("a string always serialises");
    if !ascii_only || plain.is_ascii() {
        return plain;
    }
    let mut out = String::with_capacity(plain.len() + 16);
    for c in plain.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// A string as Meta writes it.
fn meta(text: &str) -> String {
    string(text, true)
}

/// A string as Viber and LinkedIn write it.
fn plain(text: &str) -> String {
    string(text, false)
}

/// Messenger's envelope around one `messaging[]` item.
fn messenger_envelope(page_id: &str, at_ms: i64, item: &str) -> String {
    format!(r#"{{"object":"page","entry":[{{"id":{},"time":{at_ms},"messaging":[{item}]}}]}}"#, meta(page_id))
}

fn messenger_item(page_id: &str, user: &str, at_ms: i64, key: &str, value: &str) -> String {
    format!(
        r#"{{"sender":{{"id":{}}},"recipient":{{"id":{}}},"timestamp":{at_ms},{}:{value}}}"#,
        meta(user),
        meta(page_id),
        meta(key)
    )
}

/// Messenger: the user `sender` wrote `text` to the Page.
pub fn messenger_text(page_id: &str, sender: &str, mid: &str, text: &str, at_ms: i64) -> String {
    let message = format!(r#"{{"mid":{},"text":{}}}"#, meta(mid), meta(text));
    messenger_envelope(page_id, at_ms, &messenger_item(page_id, sender, at_ms, "message", &message))
}

/// Messenger: the user sent an image (no text), as a CDN URL.
pub fn messenger_image(page_id: &str, sender: &str, mid: &str, url: &str, at_ms: i64) -> String {
    let message =
        format!(r#"{{"mid":{},"attachments":[{{"type":"image","payload":{{"url":{}}}}}]}}"#, meta(mid), meta(url));
    messenger_envelope(page_id, at_ms, &messenger_item(page_id, sender, at_ms, "message", &message))
}

/// Messenger: the user tapped a postback button.
pub fn messenger_postback(page_id: &str, sender: &str, mid: &str, title: &str, payload: &str, at_ms: i64) -> String {
    let postback = format!(r#"{{"mid":{},"title":{},"payload":{}}}"#, meta(mid), meta(title), meta(payload));
    messenger_envelope(page_id, at_ms, &messenger_item(page_id, sender, at_ms, "postback", &postback))
}

/// Messenger: our messages `mids` (may be empty: Meta omits them sometimes) reached `user`; everything
/// sent before `watermark_ms` is delivered.
pub fn messenger_delivery(page_id: &str, user: &str, mids: &[&str], watermark_ms: i64, at_ms: i64) -> String {
    let mids: Vec<String> = mids.iter().map(|m| meta(m)).collect();
    let delivery = if mids.is_empty() {
        format!(r#"{{"watermark":{watermark_ms}}}"#)
    } else {
        format!(r#"{{"mids":[{}],"watermark":{watermark_ms}}}"#, mids.join(","))
    };
    messenger_envelope(page_id, at_ms, &messenger_item(page_id, user, at_ms, "delivery", &delivery))
}

/// Messenger: `user` read everything we sent up to `watermark_ms`.
pub fn messenger_read(page_id: &str, user: &str, watermark_ms: i64, at_ms: i64) -> String {
    let read = format!(r#"{{"watermark":{watermark_ms}}}"#);
    messenger_envelope(page_id, at_ms, &messenger_item(page_id, user, at_ms, "read", &read))
}

/// Our WhatsApp number, as webhook bodies name it.
#[derive(Clone, Copy, Debug)]
pub struct WhatsappNumber<'a> {
    /// The WABA id (`entry[].id`).
    pub business_account_id: &'a str,
    pub phone_number_id: &'a str,
    pub display_phone_number: &'a str,
}

fn whatsapp_envelope(number: &WhatsappNumber<'_>, members: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":{},"changes":[{{"value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":{},"phone_number_id":{}}},{members}}},"field":"messages"}}]}}]}}"#,
        meta(number.business_account_id),
        meta(number.display_phone_number),
        meta(number.phone_number_id),
    )
}

fn whatsapp_inbound(number: &WhatsappNumber<'_>, from: &str, name: &str, message: &str) -> String {
    let members = format!(r#""contacts":[{}],"messages":[{message}]"#, whatsapp_contact(from, Some(name)));
    whatsapp_envelope(number, &members)
}

/// The business-scoped user id (BSUID) the sandbox gives a phone number: stable per number, in
/// Meta's form (two letters, a dot, digits; `ZZ` is no country).
pub fn business_scoped_id(phone: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(phone.as_bytes());
    let number = u64::from_be_bytes(digest[..8].try_into().expect("eight bytes"));
    format!("ZZ.{number:020}")
}

/// A user's ids as today's webhooks carry them: a number (`wa_id`) and its BSUID (`user_id`), or
/// only the BSUID for a user who withholds the number (`who` is then the BSUID).
fn whatsapp_ids(who: &str) -> (Option<String>, String) {
    if crate::platform::whatsapp::is_business_scoped_user_id(who) {
        (None, who.to_owned())
    } else {
        (Some(who.to_owned()), business_scoped_id(who))
    }
}

/// One `contacts[]` element for `who`.
fn whatsapp_contact(who: &str, name: Option<&str>) -> String {
    let (number, user_id) = whatsapp_ids(who);
    let profile = name.map(|name| format!(r#""profile":{{"name":{}}},"#, meta(name))).unwrap_or_default();
    let wa_id = number.map(|n| format!(r#""wa_id":{},"#, meta(&n))).unwrap_or_default();
    format!(r#"{{{profile}{wa_id}"user_id":{}}}"#, meta(&user_id))
}

/// A message's sender fields: `"from"` (when the number is known) and `"from_user_id"`.
fn whatsapp_sender(who: &str) -> String {
    let (number, user_id) = whatsapp_ids(who);
    let from = number.map(|n| format!(r#""from":{},"#, meta(&n))).unwrap_or_default();
    format!(r#"{from}"from_user_id":{}"#, meta(&user_id))
}

/// WhatsApp: `from` (a wa_id) wrote `text`. `at_secs` is Unix seconds, sent as a string as Meta does.
pub fn whatsapp_text(
    number: &WhatsappNumber<'_>,
    from: &str,
    name: &str,
    wamid: &str,
    text: &str,
    at_secs: i64,
) -> String {
    let message = format!(
        r#"{{{},"id":{},"timestamp":"{at_secs}","text":{{"body":{}}},"type":"text"}}"#,
        whatsapp_sender(from),
        meta(wamid),
        meta(text)
    );
    whatsapp_inbound(number, from, name, &message)
}

/// WhatsApp: `from` sent an image, known by its media id, with an optional caption.
pub fn whatsapp_image(
    number: &WhatsappNumber<'_>,
    from: &str,
    name: &str,
    wamid: &str,
    media_id: &str,
    caption: Option<&str>,
    at_secs: i64,
) -> String {
    let caption = caption.map(|c| format!(r#","caption":{}"#, meta(c))).unwrap_or_default();
    let sha256 = super::graph::media_sha256(media_id);
    let message = format!(
        r#"{{{},"id":{},"timestamp":"{at_secs}","type":"image","image":{{"mime_type":"image/jpeg","sha256":{},"id":{}{caption}}}}}"#,
        whatsapp_sender(from),
        meta(wamid),
        meta(&sha256),
        meta(media_id)
    );
    whatsapp_inbound(number, from, name, &message)
}

/// WhatsApp: a status (`sent`, `delivered`, `read`) for our message `wamid` to `recipient` (a
/// number, or a BSUID), with the `contacts` beside it as today's webhooks have them.
pub fn whatsapp_status(
    number: &WhatsappNumber<'_>,
    wamid: &str,
    status: &str,
    recipient: &str,
    at_secs: i64,
) -> String {
    let (phone, user_id) = whatsapp_ids(recipient);
    let recipient_id = phone.map(|p| format!(r#""recipient_id":{},"#, meta(&p))).unwrap_or_default();
    let members = format!(
        r#""contacts":[{}],"statuses":[{{"id":{},"status":{},"timestamp":"{at_secs}",{recipient_id}"recipient_user_id":{},"pricing":{{"billable":false,"pricing_model":"PMP","category":"service","type":"free_customer_service"}}}}]"#,
        whatsapp_contact(recipient, None),
        meta(wamid),
        meta(status),
        meta(&user_id)
    );
    whatsapp_envelope(number, &members)
}

/// Viber's chat host name in the sandbox's callbacks.
pub const VIBER_CHAT_HOSTNAME: &str = "SN-SANDBOX_";

/// Viber: `sender_id` wrote `text` to the bot.
pub fn viber_text(message_token: u64, sender_id: &str, sender_name: &str, text: &str, at_ms: i64) -> String {
    let message = format!(r#"{{"type":"text","text":{}}}"#, plain(text));
    viber_message(message_token, sender_id, sender_name, &message, at_ms)
}

/// Viber: `sender_id` sent a picture, with an optional caption.
pub fn viber_picture(
    message_token: u64,
    sender_id: &str,
    sender_name: &str,
    media_url: &str,
    caption: Option<&str>,
    at_ms: i64,
) -> String {
    let caption = caption.map(|c| format!(r#","text":{}"#, plain(c))).unwrap_or_default();
    let message = format!(
        r#"{{"type":"picture","media":{},"thumbnail":{},"file_name":"photo.jpg"{caption}}}"#,
        plain(media_url),
        plain(media_url)
    );
    viber_message(message_token, sender_id, sender_name, &message, at_ms)
}

fn viber_message(message_token: u64, sender_id: &str, sender_name: &str, message: &str, at_ms: i64) -> String {
    format!(
        r#"{{"event":"message","timestamp":{at_ms},"chat_hostname":"{VIBER_CHAT_HOSTNAME}","message_token":{message_token},"sender":{{"id":{},"name":{},"avatar":"https://media-direct.cdn.viber.com/sandbox.jpg","language":"en","country":"GB","api_version":10}},"message":{message},"silent":false}}"#,
        plain(sender_id),
        plain(sender_name)
    )
}

fn viber_receipt(event: &str, message_token: u64, user_id: &str, at_ms: i64) -> String {
    format!(
        r#"{{"event":"{event}","timestamp":{at_ms},"chat_hostname":"{VIBER_CHAT_HOSTNAME}","message_token":{message_token},"user_id":{}}}"#,
        plain(user_id)
    )
}

/// Viber: our message `message_token` reached `user_id`.
pub fn viber_delivered(message_token: u64, user_id: &str, at_ms: i64) -> String {
    viber_receipt("delivered", message_token, user_id, at_ms)
}

/// Viber: `user_id` saw our message `message_token` (and everything before it).
pub fn viber_seen(message_token: u64, user_id: &str, at_ms: i64) -> String {
    viber_receipt("seen", message_token, user_id, at_ms)
}

/// Viber: `user_id` subscribed to the bot.
pub fn viber_subscribed(message_token: u64, user_id: &str, name: &str, at_ms: i64) -> String {
    format!(
        r#"{{"event":"subscribed","timestamp":{at_ms},"chat_hostname":"{VIBER_CHAT_HOSTNAME}","user":{{"id":{},"name":{},"avatar":"https://media-direct.cdn.viber.com/sandbox.jpg","country":"GB","language":"en","api_version":10}},"message_token":{message_token}}}"#,
        plain(user_id),
        plain(name)
    )
}

/// Viber: the check callback it POSTs right after `set_webhook`.
pub fn viber_webhook_check(message_token: u64, at_ms: i64) -> String {
    format!(
        r#"{{"event":"webhook","timestamp":{at_ms},"chat_hostname":"{VIBER_CHAT_HOSTNAME}","message_token":{message_token}}}"#
    )
}

/// A comment on one of the organization's posts, as LinkedIn notifies it.
#[derive(Clone, Copy, Debug)]
pub struct LinkedinComment<'a> {
    pub organization_id: &'a str,
    pub notification_id: u64,
    /// The post (activity URN) commented on.
    pub post_urn: &'a str,
    /// The number that, with the post, names the new comment.
    pub comment_id: u64,
    /// The commenter's person URN.
    pub commenter_urn: &'a str,
    pub text: &'a str,
    pub at_ms: i64,
}

/// LinkedIn: one `COMMENT` organization social action notification.
pub fn linkedin_comment(comment: &LinkedinComment<'_>) -> String {
    let organization = format!("urn:li:organization:{}", comment.organization_id);
    let comment_urn = format!("urn:li:comment:({},{})", comment.post_urn, comment.comment_id);
    format!(
        r#"{{"type":"ORGANIZATION_SOCIAL_ACTION_NOTIFICATIONS","notifications":[{{"notificationId":{},"organizationalEntity":{},"action":"COMMENT","sourcePost":{},"decoratedSourcePost":{{"entity":{},"owner":{},"text":"A post from the Parley sandbox","mediaCategory":"NONE"}},"generatedActivity":{},"decoratedGeneratedActivity":{{"comment":{{"entity":{},"owner":{},"object":{},"text":{}}}}},"lastModifiedAt":{}}}]}}"#,
        comment.notification_id,
        plain(&organization),
        plain(comment.post_urn),
        plain(comment.post_urn),
        plain(&organization),
        plain(&comment_urn),
        plain(&comment_urn),
        plain(comment.commenter_urn),
        plain(comment.post_urn),
        plain(comment.text),
        comment.at_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentKind, Direction, EventKind, InboundEvent, Platform, ReceiptKind, Timestamp};
    use crate::platform::{self, ParseContext, SignedRequest};
    use crate::secret::Secret;

    const AT_MS: i64 = 1_718_000_000_123;

    /// Signs `body` as the platform would, checks the daemon's verifier accepts it, and parses it.
    fn verified_events(platform: Platform, body: &str, account_id: &str) -> Vec<InboundEvent> {
        let secret = Secret::new("sandbox-test-secret");
        let header = match platform {
            Platform::Facebook => platform::facebook::sign_webhook(&secret, body.as_bytes()),
            Platform::Whatsapp => platform::whatsapp::sign_webhook(&secret, body.as_bytes()),
            Platform::Viber => platform::viber::sign_webhook(&secret, body.as_bytes()),
            Platform::Linkedin => platform::linkedin::sign_webhook(&secret, body.as_bytes()),
        };
        let request = SignedRequest { signature_header: Some(&header), query: None, body: body.as_bytes() };
        platform::verify_signature(platform, &secret, &request).expect("signature verifies");
        let wrong = Secret::new("another-secret");
        assert!(platform::verify_signature(platform, &wrong, &request).is_err());
        serde_json::from_str::<serde_json::Value>(body).expect("valid JSON");
        let ctx = ParseContext { account_id, received_at: Timestamp::from_millis(AT_MS) };
        platform::parse_webhook(platform, body.as_bytes(), &ctx).expect("parses")
    }

    fn only(events: Vec<InboundEvent>) -> InboundEvent {
        assert_eq!(events.len(), 1, "{events:?}");
        events.into_iter().next().unwrap()
    }

    #[test]
    fn messenger_text_parses_as_an_inbound_message() {
        let body = messenger_text("104857600123456", "7212345678901234", "m_sim_1", "Olá, 📦?", AT_MS);
        assert!(body.is_ascii(), "Meta escapes non-ASCII: {body}");
        let event = only(verified_events(Platform::Facebook, &body, "104857600123456"));
        assert_eq!(event.contact_id.as_deref(), Some("7212345678901234"));
        match event.kind {
            EventKind::Message { direction, platform_message_id, content } => {
                assert_eq!(direction, Direction::Inbound);
                assert_eq!(platform_message_id, "m_sim_1");
                assert_eq!(content.text.as_deref(), Some("Olá, 📦?"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messenger_image_and_postback_parse() {
        let image = messenger_image("1", "2", "m_img", "https://example.com/a.jpg", AT_MS);
        match only(verified_events(Platform::Facebook, &image, "1")).kind {
            EventKind::Message { content, .. } => {
                assert_eq!(content.attachments.len(), 1);
                assert_eq!(content.attachments[0].url.as_deref(), Some("https://example.com/a.jpg"));
            }
            other => panic!("{other:?}"),
        }
        let postback = messenger_postback("1", "2", "m_pb", "Get Started", "GET_STARTED", AT_MS);
        match only(verified_events(Platform::Facebook, &postback, "1")).kind {
            EventKind::Message { content, .. } => {
                assert_eq!(content.kind, ContentKind::Postback);
                assert_eq!(content.payload.as_deref(), Some("GET_STARTED"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messenger_receipts_parse_with_mids_and_watermarks() {
        let delivery = messenger_delivery("1", "2", &["m_out_1"], AT_MS, AT_MS);
        match only(verified_events(Platform::Facebook, &delivery, "1")).kind {
            EventKind::Receipt(receipt) => {
                assert_eq!(receipt.kind, ReceiptKind::Delivered);
                assert_eq!(receipt.message_ids, vec!["m_out_1".to_owned()]);
                assert_eq!(receipt.watermark, Some(Timestamp::from_millis(AT_MS)));
            }
            other => panic!("{other:?}"),
        }
        let read = messenger_read("1", "2", AT_MS, AT_MS + 5);
        match only(verified_events(Platform::Facebook, &read, "1")).kind {
            EventKind::Receipt(receipt) => {
                assert_eq!(receipt.kind, ReceiptKind::Read);
                assert_eq!(receipt.watermark, Some(Timestamp::from_millis(AT_MS)));
            }
            other => panic!("{other:?}"),
        }
    }

    const NUMBER: WhatsappNumber<'static> = WhatsappNumber {
        business_account_id: "102290129340398",
        phone_number_id: "106540352242922",
        display_phone_number: "15550001111",
    };

    #[test]
    fn whatsapp_text_and_image_parse() {
        let text = whatsapp_text(&NUMBER, "5511987654321", "Ana Souza", "wamid.SIM1", "Chegou?", 1_718_000_000);
        let event = only(verified_events(Platform::Whatsapp, &text, NUMBER.phone_number_id));
        assert_eq!(event.account_id, NUMBER.phone_number_id);
        assert_eq!(event.contact_name.as_deref(), Some("Ana Souza"));
        assert_eq!(event.occurred_at, Timestamp::from_secs(1_718_000_000));
        match event.kind {
            EventKind::Message { platform_message_id, content, .. } => {
                assert_eq!(platform_message_id, "wamid.SIM1");
                assert_eq!(content.text.as_deref(), Some("Chegou?"));
            }
            other => panic!("{other:?}"),
        }
        let image = whatsapp_image(&NUMBER, "5511987654321", "Ana", "wamid.SIM2", "1479537139650973", Some("look"), 1);
        match only(verified_events(Platform::Whatsapp, &image, NUMBER.phone_number_id)).kind {
            EventKind::Message { content, .. } => assert_eq!(content.kind, ContentKind::Media),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whatsapp_statuses_parse_for_each_step() {
        for (status, kind) in
            [("sent", ReceiptKind::Sent), ("delivered", ReceiptKind::Delivered), ("read", ReceiptKind::Read)]
        {
            let body = whatsapp_status(&NUMBER, "wamid.OUT1", status, "5511987654321", 1_718_000_105);
            let event = only(verified_events(Platform::Whatsapp, &body, NUMBER.phone_number_id));
            assert_eq!(event.contact_id.as_deref(), Some("5511987654321"));
            match event.kind {
                EventKind::Receipt(receipt) => {
                    assert_eq!(receipt.kind, kind);
                    assert_eq!(receipt.message_ids, vec!["wamid.OUT1".to_owned()]);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// Above 2^53: a double would round it.
    const TOKEN: u64 = 5_741_311_803_571_721_087;

    #[test]
    fn viber_tokens_stay_exact_64_bit_numbers() {
        let body = viber_delivered(TOKEN, "pttm25kSGUo1919sBORWyA==", AT_MS);
        assert!(body.contains(r#""message_token":5741311803571721087,"#), "{body}");
        match only(verified_events(Platform::Viber, &body, "Acme")).kind {
            EventKind::Receipt(receipt) => {
                assert_eq!(receipt.kind, ReceiptKind::Delivered);
                assert_eq!(receipt.message_ids, vec![TOKEN.to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let seen = viber_seen(TOKEN, "pttm25kSGUo1919sBORWyA==", AT_MS);
        match only(verified_events(Platform::Viber, &seen, "Acme")).kind {
            EventKind::Receipt(receipt) => assert_eq!(receipt.kind, ReceiptKind::Read),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn viber_messages_subscriptions_and_the_webhook_check_parse() {
        let text = viber_text(TOKEN, "pttm25kSGUo1919sBORWyA==", "Ivan P.", "Привіт", AT_MS);
        assert!(text.contains("Привіт"), "Viber does not escape: {text}");
        let event = only(verified_events(Platform::Viber, &text, "Acme"));
        assert_eq!(event.sender_id.as_deref(), Some("pttm25kSGUo1919sBORWyA=="));
        match event.kind {
            EventKind::Message { platform_message_id, content, .. } => {
                assert_eq!(platform_message_id, TOKEN.to_string());
                assert_eq!(content.text.as_deref(), Some("Привіт"));
            }
            other => panic!("{other:?}"),
        }
        let picture = viber_picture(TOKEN + 1, "u", "Ivan", "https://example.com/p.jpg", None, AT_MS);
        match only(verified_events(Platform::Viber, &picture, "Acme")).kind {
            EventKind::Message { content, .. } => assert_eq!(content.kind, ContentKind::Media),
            other => panic!("{other:?}"),
        }
        let subscribed = viber_subscribed(TOKEN + 2, "u", "Ivan", AT_MS);
        assert_eq!(only(verified_events(Platform::Viber, &subscribed, "Acme")).kind, EventKind::Subscribed);
        let check = viber_webhook_check(TOKEN + 3, AT_MS);
        assert!(matches!(only(verified_events(Platform::Viber, &check, "Acme")).kind, EventKind::Activity { .. }));
    }

    #[test]
    fn linkedin_comment_parses_as_an_inbound_comment() {
        let body = linkedin_comment(&LinkedinComment {
            organization_id: "2414183",
            notification_id: 8_812_345_001,
            post_urn: "urn:li:activity:7190000000000000001",
            comment_id: 7_190_000_000_000_000_099,
            commenter_urn: "urn:li:person:AbC123xYz",
            text: "Do you ship to Portugal?",
            at_ms: AT_MS,
        });
        let event = only(verified_events(Platform::Linkedin, &body, "urn:li:organization:2414183"));
        assert_eq!(event.sender_id.as_deref(), Some("urn:li:person:AbC123xYz"));
        match event.kind {
            EventKind::Message { content, .. } => {
                assert_eq!(content.kind, ContentKind::Comment);
                assert_eq!(content.text.as_deref(), Some("Do you ship to Portugal?"));
            }
            other => panic!("{other:?}"),
        }
    }
}

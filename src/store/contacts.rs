//! One person, one conversation, whichever of their ids a webhook carries.
//!
//! WhatsApp gives a user two ids since 2026: the phone number and a business-scoped user id
//! (BSUID), and may withhold the number. A platform module puts the one it keys conversations by
//! in `InboundEvent::contact_id` (the number when there is one) and the other in
//! `contact_alias`. This table remembers, per account, which conversation contact an id belongs
//! to, so that a webhook with either id, or both, lands in the same conversation:
//!
//! | key | value |
//! | --- | --- |
//! | platform tag, account id, 0, id (`keys::contact_alias_key`) | the conversation's `contact_id` (UTF-8) |
//!
//! Resolution, in order: what the table says for the alias, then for the id; else, when the
//! event carries both, an existing conversation keyed by the alias (the user wrote first without
//! a number); else the id. An event with both ids records the alias (and the id, when the
//! conversation is keyed by the other) in the same write as the event. Two conversations that
//! already exist separately for one person (history under the number from before BSUIDs, and a
//! conversation started without the number) are merged, in the same write, into the older one
//! when an event carries both ids (`merge`).

use super::OutboxEntry;
use super::keyspace::TreeId;
use super::writer::Writer;
use super::{Store, StoreError, keys};
use crate::model::{Conversation, InboundEvent, Message, Platform};

fn known(writer: &Writer<'_>, platform: Platform, account_id: &str, id: &str) -> Result<Option<String>, StoreError> {
    Ok(writer
        .get_raw(TreeId::Contacts, &keys::contact_alias_key(platform, account_id, id))?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|contact| !contact.is_empty()))
}

/// The conversation contact `event` belongs to (see the module documentation), recording what it
/// teaches into `writer`. Platforms without two ids per person are passed through.
pub(super) fn resolve(writer: &mut Writer<'_>, event: &InboundEvent) -> Result<Option<String>, StoreError> {
    let Some(id) = event.contact_id.as_deref() else { return Ok(None) };
    if event.platform != Platform::Whatsapp {
        return Ok(Some(id.to_owned()));
    }
    let (platform, account) = (event.platform, event.account_id.as_str());
    let alias = event.contact_alias.as_deref().filter(|alias| *alias != id);
    let alias_known = match alias {
        Some(alias) => known(writer, platform, account, alias)?,
        None => None,
    };
    let id_known = if alias_known.is_none() { known(writer, platform, account, id)? } else { None };
    let canonical = match (alias_known.clone(), id_known.clone(), alias) {
        (Some(contact), _, _) | (None, Some(contact), _) => contact,
        (None, None, Some(alias))
            if writer
                .contains(TreeId::Conversations, keys::conversation_id(platform, account, alias).as_bytes())? =>
        {
            // The person wrote without their number before. If a conversation keyed by the
            // number exists too (history from before BSUIDs), the two are one person's: merged.
            if writer.contains(TreeId::Conversations, keys::conversation_id(platform, account, id).as_bytes())? {
                merge(writer, platform, account, id, alias)?
            } else {
                alias.to_owned()
            }
        }
        _ => id.to_owned(),
    };
    if let Some(alias) = alias {
        if alias_known.as_deref() != Some(canonical.as_str()) {
            writer.insert_raw(
                TreeId::Contacts,
                keys::contact_alias_key(platform, account, alias),
                canonical.as_bytes(),
            );
        }
        if canonical != id && id_known.as_deref() != Some(canonical.as_str()) {
            writer.insert_raw(TreeId::Contacts, keys::contact_alias_key(platform, account, id), canonical.as_bytes());
        }
    }
    Ok(Some(canonical))
}

/// Merges the conversations of contacts `a` and `b` (one person's two ids) into the older one,
/// in `writer`'s batch, and returns that one's contact. The younger one's messages move over
/// (their timeline entries and records, and any queued replies), its unread count adds up, and
/// it is removed, with a `conversation.merged` event (and `conversation.updated`) for the one
/// that stays.
fn merge(writer: &mut Writer<'_>, platform: Platform, account: &str, a: &str, b: &str) -> Result<String, StoreError> {
    let (a_id, b_id) = (keys::conversation_id(platform, account, a), keys::conversation_id(platform, account, b));
    let (Some(first), Some(second)) = (
        writer.get::<Conversation>(TreeId::Conversations, a_id.as_bytes())?,
        writer.get::<Conversation>(TreeId::Conversations, b_id.as_bytes())?,
    ) else {
        return Ok(b.to_owned());
    };
    let (into, from) = if first.created_at <= second.created_at { (first, second) } else { (second, first) };
    let from_prefix = keys::timeline_prefix(&from.id);
    let into_prefix = keys::timeline_prefix(&into.id);
    for (key, message_id) in writer.scan_prefix(TreeId::Timeline, &from_prefix)? {
        let mut moved = into_prefix.clone();
        moved.extend_from_slice(&key[from_prefix.len()..]);
        writer.remove(TreeId::Timeline, key);
        writer.insert_raw(TreeId::Timeline, moved, message_id.clone());
        if let Some(mut message) = writer.get::<Message>(TreeId::Messages, &message_id)? {
            message.conversation_id.clone_from(&into.id);
            writer.insert(TreeId::Messages, message_id, &message)?;
        }
    }
    for (key, bytes) in writer.scan_prefix(TreeId::Outbox, &[platform.tag()])? {
        let Ok(mut entry) = serde_json::from_slice::<OutboxEntry>(&bytes) else { continue };
        if entry.conversation_id == from.id {
            entry.conversation_id.clone_from(&into.id);
            writer.insert(TreeId::Outbox, key, &entry)?;
        }
    }
    let newer = |x: &Conversation, y: &Conversation| x.last_message_at >= y.last_message_at;
    let latest = if newer(&into, &from) { &into } else { &from };
    let merged = Conversation {
        contact_name: into.contact_name.clone().or_else(|| from.contact_name.clone()),
        last_message_text: latest.last_message_text.clone(),
        last_message_at: latest.last_message_at,
        unread: into.unread.saturating_add(from.unread),
        created_at: into.created_at.min(from.created_at),
        updated_at: into.updated_at.max(from.updated_at),
        last_inbound_at: into.last_inbound_at.max(from.last_inbound_at),
        ..into.clone()
    };
    writer.remove(TreeId::Activity, keys::activity_key(from.platform, from.updated_at, &from.id));
    writer.remove_counted(TreeId::Conversations, from.id.as_bytes())?;
    super::save_conversation(writer, Some(&into), &merged)?;
    writer.emit_merged(&from.id, &merged)?;
    for id in [a, b] {
        if id != merged.contact_id {
            writer.insert_raw(
                TreeId::Contacts,
                keys::contact_alias_key(platform, account, id),
                merged.contact_id.as_bytes(),
            );
        }
    }
    Ok(merged.contact_id)
}

/// The conversation contact for `id` on `account`, for a message the operator starts (`POST
/// /api/messages`): the conversation the id belongs to when the table knows it, else `id`.
pub(super) fn canonical(store: &Store, platform: Platform, account: &str, id: &str) -> Result<String, StoreError> {
    if platform != Platform::Whatsapp {
        return Ok(id.to_owned());
    }
    Ok(known(&Writer::new(store), platform, account, id)?.unwrap_or_else(|| id.to_owned()))
}

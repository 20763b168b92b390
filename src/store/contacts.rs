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
//! conversation started without the number) are not merged: the one keyed by the BSUID is used
//! from then on.

use super::keyspace::TreeId;
use super::writer::Writer;
use super::{Store, StoreError, keys};
use crate::model::{InboundEvent, Platform};

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
            alias.to_owned()
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

/// The conversation contact for `id` on `account`, for a message the operator starts (`POST
/// /api/messages`): the conversation the id belongs to when the table knows it, else `id`.
pub(super) fn canonical(store: &Store, platform: Platform, account: &str, id: &str) -> Result<String, StoreError> {
    if platform != Platform::Whatsapp {
        return Ok(id.to_owned());
    }
    Ok(known(&Writer::new(store), platform, account, id)?.unwrap_or_else(|| id.to_owned()))
}

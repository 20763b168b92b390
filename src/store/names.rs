//! Contact names learnt after the fact (Messenger's User Profile API): which conversations want
//! one, and storing one that arrived.
//!
//! A name from a webhook (Viber's `sender.name`, WhatsApp's `contacts[].profile.name`) is written
//! by ingest and always wins; a looked-up name only fills a conversation that has none, so it
//! never replaces one a webhook gave meanwhile.

use super::keyspace::TreeId;
use super::writer::Writer;
use super::{Store, StoreError, contacts, keys, save_conversation};
use crate::model::{Conversation, EventKind, InboundEvent, Platform, Timestamp};

/// A conversation without a name, and the platform id to look its contact up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnnamedContact {
    pub conversation_id: String,
    /// The conversation's `contact_id` (a PSID).
    pub contact_id: String,
}

/// Platforms whose contacts are named by a lookup rather than by their webhooks.
pub fn names_by_lookup(platform: Platform) -> bool {
    platform == Platform::Facebook
}

impl Store {
    /// The conversations that `events` (already stored) put a message into and that have no name
    /// yet, once each, in order; only for platforms that [`names_by_lookup`]. One read per such
    /// message, of a record just written (so in sled's cache); none for other platforms.
    pub fn unnamed_contacts(&self, events: &[InboundEvent]) -> Result<Vec<UnnamedContact>, StoreError> {
        let mut unnamed: Vec<UnnamedContact> = Vec::new();
        for event in events {
            if !names_by_lookup(event.platform) || !matches!(event.kind, EventKind::Message { .. }) {
                continue;
            }
            let Some(contact) = event.contact_id.as_deref().filter(|c| !c.is_empty()) else { continue };
            let contact = contacts::canonical(self, event.platform, &event.account_id, contact)?;
            let conversation_id = keys::conversation_id(event.platform, &event.account_id, &contact);
            if unnamed.iter().any(|u| u.conversation_id == conversation_id) {
                continue;
            }
            match self.conversation(&conversation_id) {
                Ok(Some(conversation)) if conversation.contact_name.is_none() => {
                    unnamed.push(UnnamedContact { conversation_id, contact_id: conversation.contact_id });
                }
                // Named already, not stored (a duplicate that made none), or unreadable (reported
                // by the read; ingest rebuilds it on the next message).
                Ok(_) | Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(unnamed)
    }

    /// Gives conversation `conversation_id` the name `name`, if it still has none, in one atomic
    /// write with its `conversation.updated` event (dated `at`). Its activity time does not change:
    /// learning a name does not move a conversation up the inbox. False when nothing was written
    /// (named meanwhile, gone, unreadable, or an empty name).
    pub fn name_contact(&self, conversation_id: &str, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(false);
        }
        let mut writer = Writer::stored_at(self, at);
        let before: Conversation = match writer.get(TreeId::Conversations, conversation_id.as_bytes()) {
            Ok(Some(conversation)) => conversation,
            Ok(None) | Err(StoreError::Unreadable { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if before.contact_name.is_some() {
            return Ok(false);
        }
        let mut after = before.clone();
        after.contact_name = Some(name.to_owned());
        save_conversation(&mut writer, Some(&before), &after)?;
        writer.commit()?;
        Ok(true)
    }
}

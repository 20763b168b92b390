//! Filtering the conversation list: by platform, by unread, and a search over the contact's
//! name and id and what was said. A search is a walk over the list in its order, within a
//! budget of records per page (no index to keep: writes stay as cheap as before).

use super::{Store, StoreError, TreeId, keys};
use crate::model::{Conversation, Platform};

/// Records (conversations and messages) one page of a filtered list examines at most.
pub const SCAN_BUDGET: usize = 20_000;
/// The newest messages of each conversation a search reads.
pub const MESSAGES_SEARCHED: usize = 500;

/// Which conversations a list shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    pub platform: Option<Platform>,
    /// Only conversations with unread messages.
    pub unread_only: bool,
    /// Text the contact's name or id or a message must contain (case-insensitive); see [`needle`].
    pub query: Option<String>,
}

impl ConversationFilter {
    /// True when the list must look at each conversation (not only at the platform's list).
    pub fn is_search(&self) -> bool {
        self.unread_only || self.query.is_some()
    }
}

/// What a search looks for: the query in lower case without surrounding whitespace; `None` when
/// nothing is left.
pub fn needle(query: &str) -> Option<String> {
    let trimmed = query.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_lowercase())
}

/// True when `haystack` contains `needle` (already lower case), ignoring case.
pub fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(needle)
}

/// The conversation's own fields that a search reads.
pub fn conversation_matches(conversation: &Conversation, needle: &str) -> bool {
    conversation.contact_name.as_deref().is_some_and(|name| contains(name, needle))
        || contains(&conversation.contact_id, needle)
        || conversation.last_message_text.as_deref().is_some_and(|text| contains(text, needle))
}

impl Store {
    /// True when `conversation` passes `filter`; what it reads is taken off `budget`.
    pub(super) fn passes(
        &self,
        filter: &ConversationFilter,
        conversation: &Conversation,
        budget: &mut usize,
    ) -> Result<bool, StoreError> {
        if filter.unread_only && conversation.unread == 0 {
            return Ok(false);
        }
        let Some(needle) = &filter.query else { return Ok(true) };
        if conversation_matches(conversation, needle) {
            return Ok(true);
        }
        self.said(&conversation.id, needle, budget)
    }

    /// True when one of the conversation's newest [`MESSAGES_SEARCHED`] messages contains `needle`.
    fn said(&self, conversation_id: &str, needle: &str, budget: &mut usize) -> Result<bool, StoreError> {
        let prefix = keys::timeline_prefix(conversation_id);
        for entry in self.table(TreeId::Timeline).scan_prefix(&prefix).rev().take(MESSAGES_SEARCHED) {
            if *budget == 0 {
                return Ok(false);
            }
            *budget -= 1;
            let (_, message_id) = entry?;
            let Ok(id) = std::str::from_utf8(&message_id) else { continue };
            match self.message(id) {
                Ok(Some(message)) if message.text.as_deref().is_some_and(|text| contains(text, needle)) => {
                    return Ok(true);
                }
                Ok(_) | Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_needle_is_trimmed_and_lower_case() {
        assert_eq!(needle("  Hello   WORLD "), Some("hello   world".to_owned()));
        assert_eq!(needle("Ünïcode"), Some("ünïcode".to_owned()));
        assert_eq!(needle("   "), None);
        assert_eq!(needle(""), None);
    }

    #[test]
    fn matching_ignores_case() {
        assert!(contains("Order #1234 is LATE", "is late"));
        assert!(contains("ÄRGER", "ärger"));
        assert!(!contains("hello", "help"));
    }
}

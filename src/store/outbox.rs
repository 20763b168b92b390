//! The outbound half of the store: the outbox (what each channel still has to send, in order),
//! status changes of sent messages, receipts that arrive before the send response, and the tokens
//! channels refreshed.

use serde::{Deserialize, Serialize};

use super::keyspace::TreeId;
use super::writer::Writer;
use super::{Store, StoreError, encode, keys};
use crate::feed::EventType;
use crate::model::{
    ContentKind, Conversation, Direction, Message, MessageError, OutboundDraft, OutboundMessage, Platform, ReceiptKind,
    Status, Timestamp,
};
use crate::platform::SendAccount;
use crate::secret::Secret;

/// The conversation a reply goes to; created if it does not exist yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationTarget {
    pub platform: Platform,
    pub account_id: String,
    pub contact_id: String,
}

/// One message waiting to be sent, as kept in the `outbox` tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Order of queueing within the platform; the outbox key.
    pub seq: u64,
    pub platform: Platform,
    pub conversation_id: String,
    pub queued_at: Timestamp,
    /// After this, a temporary failure is final.
    pub deadline_at: Timestamp,
    pub message: OutboundMessage,
}

/// A receipt whose message we do not know yet (its send response has not arrived).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingReceipt {
    kind: ReceiptKind,
    error: Option<MessageError>,
}

/// A token a channel obtained (refresh, exchange), kept across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredToken {
    #[serde(serialize_with = "crate::secret::serialize_for_storage")]
    pub access_token: Secret,
    pub expires_at: Option<Timestamp>,
    #[serde(serialize_with = "crate::secret::serialize_optional_for_storage")]
    pub refresh_token: Option<Secret>,
    pub refresh_expires_at: Option<Timestamp>,
    /// A fingerprint of the configured token this one descends from: when the operator configures a
    /// different token, the stored one is stale and ignored.
    pub derived_from: String,
    pub obtained_at: Timestamp,
}

/// What became of a status change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub message: Message,
    /// False when the message was already at or past that status.
    pub changed: bool,
}

fn outbox_key(platform: Platform, seq: u64) -> Vec<u8> {
    let mut key = vec![platform.tag()];
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Store {
    /// Stores a reply as a queued outbound message and its outbox entry, atomically: after the next
    /// flush it survives a crash and will be sent after a restart.
    pub fn enqueue(
        &self,
        target: &ConversationTarget,
        draft: &OutboundDraft,
        account: &SendAccount,
        now: Timestamp,
        retry_deadline_ms: i64,
    ) -> Result<(Message, OutboxEntry), StoreError> {
        // A number or id that belongs to a conversation keyed by the person's other id goes there.
        let contact = super::contacts::canonical(self, target.platform, &target.account_id, &target.contact_id)?;
        let resolved = ConversationTarget { contact_id: contact, ..target.clone() };
        let target = &resolved;
        let message_id = keys::message_id(self.db.generate_id()?);
        // Validated and normalised once, with its real id: what is stored is what will be sent.
        let outbound =
            crate::platform::prepare_outbound(target.platform, account, &message_id, &target.contact_id, draft)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let seq = self.db.generate_id()?;
        let conversation_id = keys::conversation_id(target.platform, &target.account_id, &target.contact_id);
        let kind = match (&outbound.template, outbound.attachments.is_empty()) {
            (Some(_), _) => ContentKind::Template,
            _ if outbound.location.is_some() => ContentKind::Location,
            _ if !outbound.contacts.is_empty() => ContentKind::Contacts,
            (None, false) => ContentKind::Media,
            (None, true) => ContentKind::Text,
        };
        let message = Message {
            id: message_id.clone(),
            conversation_id: conversation_id.clone(),
            platform: target.platform,
            direction: Direction::Outbound,
            platform_message_id: None,
            sender_id: Some(target.account_id.clone()),
            text: outbound.text.clone(),
            attachments: outbound.attachments.clone(),
            sent_at: now,
            status: Status::Queued,
            error: None,
            kind,
            payload: outbound.template.as_ref().map(|t| t.name.clone()),
            reply_to: draft.reply_to.clone().filter(|r| !r.is_empty()),
            location: outbound.location.clone(),
            contacts: outbound.contacts.clone(),
            received_at: now,
            dispatched_at: None,
            previous: Vec::new(),
            revoked_at: None,
        };
        let entry = OutboxEntry {
            seq,
            platform: target.platform,
            conversation_id: conversation_id.clone(),
            queued_at: now,
            deadline_at: Timestamp::from_millis(now.as_millis().saturating_add(retry_deadline_ms)),
            message: outbound,
        };
        let preview = message.preview();
        let mut writer = Writer::stored_at(self, now);
        // A record that does not decode is rebuilt (as ingest does), so replies still go out.
        let before = match writer.get::<Conversation>(TreeId::Conversations, conversation_id.as_bytes()) {
            Ok(found) => found,
            Err(StoreError::Unreadable { .. }) => {
                Some(super::rebuilt_conversation(self, &mut writer, &conversation_id, target, now)?)
            }
            Err(e) => return Err(e),
        };
        let mut conversation = before.clone().unwrap_or_else(|| Conversation {
            id: conversation_id.clone(),
            platform: target.platform,
            account_id: target.account_id.clone(),
            contact_id: target.contact_id.clone(),
            contact_name: None,
            last_message_text: None,
            last_message_at: None,
            unread: 0,
            created_at: now,
            updated_at: now,
            last_inbound_at: None,
        });
        // The messaging window (window.rs), checked here so that the check and the enqueue are one
        // step: a reply the platform would refuse is refused at once, without a platform call.
        if conversation.last_inbound_at.is_none() {
            // A record from a build before windows, a rebuilt or an unreadable one: the timeline
            // knows (and is empty for a new conversation).
            conversation.last_inbound_at = self.newest_inbound_message(&conversation_id)?.map(|m| m.sent_at);
        }
        let reply = crate::window::ReplyKind {
            template: entry.message.template.is_some(),
            human_agent: entry.message.human_agent,
        };
        crate::window::check(target.platform, conversation.last_inbound_at, now, reply).map_err(StoreError::Refused)?;
        conversation.last_message_text = Some(preview);
        conversation.last_message_at = Some(now);
        // A time past the horizon was stored by an older build (see `ingest_one`): replaced.
        let horizon = now.saturating_add_millis(crate::time::MAX_EVENT_LEAD_MILLIS);
        conversation.updated_at =
            if conversation.updated_at > horizon { now } else { conversation.updated_at.max(now) };
        // Replying means the operator has read the thread.
        conversation.unread = 0;
        writer.insert_new(TreeId::Messages, message_id.as_bytes(), &message)?;
        writer.emit_message(EventType::MessageCreated, &message)?;
        super::save_conversation(&mut writer, before.as_ref(), &conversation)?;
        writer.insert_raw(
            TreeId::Timeline,
            keys::timeline_key(&conversation_id, now, &message_id),
            message_id.as_bytes(),
        );
        writer.insert(TreeId::Outbox, outbox_key(target.platform, seq), &entry)?;
        writer.commit()?;
        Ok((message, entry))
    }

    /// A platform's outbox, oldest first. An entry that does not decode cannot be sent: it is
    /// reported (once) and skipped, so that it does not hold up every other reply.
    pub fn outbox_entries(&self, platform: Platform) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut entries = Vec::new();
        for entry in self.table(TreeId::Outbox).scan_prefix(&[platform.tag()]) {
            let (key, value) = entry?;
            match self.decode_record(TreeId::Outbox.name(), &key, &value) {
                Ok(entry) => entries.push(entry),
                Err(StoreError::Unreadable { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(entries)
    }

    /// Marks a message as being sent (queued → sending).
    pub fn mark_sending(&self, message_id: &str) -> Result<Option<StatusChange>, StoreError> {
        let mut writer = Writer::new(self);
        let Some(mut message) = writer.get::<Message>(TreeId::Messages, message_id.as_bytes())? else {
            return Ok(None);
        };
        let changed = advance(&mut message, Status::Sending, None);
        if changed {
            writer.insert(TreeId::Messages, message_id.as_bytes(), &message)?;
            writer.emit_message(EventType::MessageStatus, &message)?;
            writer.commit()?;
        }
        Ok(Some(StatusChange { message, changed }))
    }

    /// Records a successful send: the platform's id, `sent` (unless a receipt already moved it on),
    /// out of the outbox; and applies receipts that arrived before this answer.
    pub fn mark_sent(
        &self,
        entry: &OutboxEntry,
        platform_message_id: &str,
        dispatched_at: Timestamp,
    ) -> Result<Option<StatusChange>, StoreError> {
        let index_key = keys::platform_message_key(entry.platform, platform_message_id);
        let watermarks = self.watermarks(&entry.conversation_id)?;
        let mut writer = Writer::new(self);
        writer.remove(TreeId::Outbox, outbox_key(entry.platform, entry.seq));
        // An unreadable message record is left as it is, like a missing one: the send happened,
        // and an outbox entry kept for it would be sent again after every reload.
        let Some(mut message) = readable_message(&writer, &entry.message.id)? else {
            writer.commit()?;
            return Ok(None);
        };
        let before = message.clone();
        // A platform that accepted a message without naming it (LinkedIn, rarely) leaves it
        // unindexed: an empty id must not collide with the next one.
        let known_id = !platform_message_id.is_empty();
        message.platform_message_id = known_id.then(|| platform_message_id.to_owned());
        message.dispatched_at = Some(dispatched_at);
        // Each step forward is an event of its own, with the message as it was at that step.
        let step = |writer: &mut Writer<'_>, message: &mut Message, status: Status, error| {
            if advance(message, status, error) {
                writer.emit_message(EventType::MessageStatus, message)?;
            }
            Ok::<(), StoreError>(())
        };
        step(&mut writer, &mut message, Status::Sent, None)?;
        if let Some(receipts) = writer.get_or_set_aside::<Vec<PendingReceipt>>(TreeId::PendingReceipts, &index_key)? {
            writer.remove(TreeId::PendingReceipts, index_key.clone());
            for receipt in receipts {
                step(&mut writer, &mut message, receipt.kind.status(), receipt.error)?;
            }
        }
        if watermarks.delivered.is_some_and(|w| dispatched_at <= w) {
            step(&mut writer, &mut message, Status::Delivered, None)?;
        }
        if watermarks.read.is_some_and(|w| dispatched_at <= w) {
            step(&mut writer, &mut message, Status::Read, None)?;
        }
        writer.insert(TreeId::Messages, message.id.as_bytes(), &message)?;
        if known_id {
            writer.insert_raw(TreeId::PlatformIds, index_key, message.id.as_bytes());
        }
        writer.commit()?;
        let changed = message != before;
        Ok(Some(StatusChange { message, changed }))
    }

    /// Records a final failure and takes the message out of the outbox.
    pub fn mark_failed(&self, entry: &OutboxEntry, error: MessageError) -> Result<Option<StatusChange>, StoreError> {
        let mut writer = Writer::new(self);
        writer.remove(TreeId::Outbox, outbox_key(entry.platform, entry.seq));
        let Some(mut message) = readable_message(&writer, &entry.message.id)? else {
            writer.commit()?;
            return Ok(None);
        };
        let changed = advance(&mut message, Status::Failed, Some(error));
        writer.insert(TreeId::Messages, message.id.as_bytes(), &message)?;
        if changed {
            writer.emit_message(EventType::MessageStatus, &message)?;
        }
        writer.commit()?;
        Ok(Some(StatusChange { message, changed }))
    }

    /// The token a channel stored last, if any.
    pub fn token(&self, platform: Platform) -> Result<Option<StoredToken>, StoreError> {
        let key = platform.as_str().as_bytes();
        self.tokens.get(key)?.map(|bytes| self.decode_record(super::TREE_TOKENS, key, &bytes)).transpose()
    }

    /// Keeps a refreshed token (durable after the next flush; callers flush).
    pub fn save_token(&self, platform: Platform, token: &StoredToken) -> Result<(), StoreError> {
        self.tokens.insert(platform.as_str(), encode(token)?)?;
        self.note_written(1);
        Ok(())
    }

    /// A conversation's watermarks; none when its record does not decode (reported).
    fn watermarks(&self, conversation_id: &str) -> Result<Watermarks, StoreError> {
        match self.record(TreeId::Watermarks, conversation_id.as_bytes()) {
            Ok(marks) => Ok(marks.unwrap_or_default()),
            Err(StoreError::Unreadable { .. }) => Ok(Watermarks::default()),
            Err(e) => Err(e),
        }
    }
}

/// The latest delivery and read watermarks of a conversation (Messenger, Viber `seen`), kept so
/// that a send response arriving after its receipt still gets the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Watermarks {
    pub delivered: Option<Timestamp>,
    pub read: Option<Timestamp>,
}

/// The message `id` of this batch; `None` when it is missing or its record does not decode
/// (reported).
fn readable_message(writer: &Writer<'_>, id: &str) -> Result<Option<Message>, StoreError> {
    match writer.get::<Message>(TreeId::Messages, id.as_bytes()) {
        Err(StoreError::Unreadable { .. }) => Ok(None),
        other => other,
    }
}

/// Moves a message's status forward (never back); a failure records its error. True if it moved.
pub(super) fn advance(message: &mut Message, status: Status, error: Option<MessageError>) -> bool {
    if !message.status.can_advance_to(status) {
        return false;
    }
    message.status = status;
    if status == Status::Failed {
        message.error = error;
    }
    true
}

/// Who receives a reply in a conversation: the contact, except on LinkedIn, where the contact is
/// the thread (a post, or a parent comment) and the comment goes under the post.
/// Applies a receipt to our outbound messages: by platform id where it names messages (kept for
/// later when the send response has not arrived yet), by watermark where it covers a time.
pub(super) fn apply_receipt(
    store: &Store,
    writer: &mut Writer<'_>,
    platform: Platform,
    conversation_id: Option<&str>,
    receipt: &crate::model::Receipt,
) -> Result<(), StoreError> {
    let status = receipt.kind.status();
    for platform_id in &receipt.message_ids {
        let index_key = keys::platform_message_key(platform, platform_id);
        match writer.get_raw(TreeId::PlatformIds, &index_key)? {
            Some(id) => {
                update(writer, &id, |m| {
                    m.direction == Direction::Outbound && advance(m, status, receipt.error.clone())
                })?;
            }
            None => {
                let mut waiting: Vec<PendingReceipt> =
                    writer.get_or_set_aside(TreeId::PendingReceipts, &index_key)?.unwrap_or_default();
                waiting.push(PendingReceipt { kind: receipt.kind, error: receipt.error.clone() });
                writer.insert(TreeId::PendingReceipts, index_key, &waiting)?;
            }
        }
    }
    let (Some(watermark), Some(conversation_id)) = (receipt.watermark, conversation_id) else { return Ok(()) };
    if !matches!(receipt.kind, ReceiptKind::Delivered | ReceiptKind::Read) {
        return Ok(());
    }
    let mut marks: Watermarks =
        writer.get_or_set_aside(TreeId::Watermarks, conversation_id.as_bytes())?.unwrap_or_default();
    let slot = if receipt.kind == ReceiptKind::Read { &mut marks.read } else { &mut marks.delivered };
    if slot.is_none_or(|w| watermark > w) {
        *slot = Some(watermark);
        writer.insert(TreeId::Watermarks, conversation_id.as_bytes(), &marks)?;
    }
    // Messages written earlier in this same batch are not in the timeline yet; they are inbound
    // or echoes, which watermarks do not concern.
    for id in store.recent_message_ids(conversation_id)? {
        update(writer, id.as_bytes(), |m| {
            m.direction == Direction::Outbound
                && m.dispatched_at.is_some_and(|at| at <= watermark)
                && advance(m, status, None)
        })?;
    }
    Ok(())
}

/// Changes a message of this batch; one whose record does not decode is left as it is (reported).
fn update(writer: &mut Writer<'_>, id: &[u8], change: impl FnOnce(&mut Message) -> bool) -> Result<(), StoreError> {
    let message = match writer.get::<Message>(TreeId::Messages, id) {
        Err(StoreError::Unreadable { .. }) => None,
        other => other?,
    };
    if let Some(mut message) = message
        && change(&mut message)
    {
        writer.insert(TreeId::Messages, id.to_vec(), &message)?;
        writer.emit_message(EventType::MessageStatus, &message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_token_keeps_its_secrets_for_the_store_only() {
        let token = StoredToken {
            access_token: Secret::new("EAALongLived60d"),
            expires_at: None,
            refresh_token: Some(Secret::new("AQUvlL_refresh")),
            refresh_expires_at: None,
            derived_from: "0011223344556677".into(),
            obtained_at: Timestamp::from_millis(1_000),
        };
        let stored = serde_json::to_string(&token).unwrap();
        assert!(stored.contains("EAALongLived60d") && stored.contains("AQUvlL_refresh"), "{stored}");
        assert_eq!(serde_json::from_str::<StoredToken>(&stored).unwrap(), token);
        let shown = format!("{token:?}");
        assert!(!shown.contains("EAALongLived60d") && !shown.contains("AQUvlL_refresh"), "{shown}");
    }
}

//! Reading the live feed from a cursor: from the feed hub's in-memory tail when the cursor is in
//! it, otherwise from the store through the conversation actor. One function for every reader
//! (server-sent events, JSON pages, outgoing webhook workers), so they all see the same sequence.

use std::sync::Arc;
use std::time::Duration;

use super::{ConversationMsg, ReadError, conversation_actor};
use crate::feed::{FeedHub, Published, Tail};

/// How long a read from the store may take before the reader is told to try again.
const STORE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reader at a cursor gets next.
#[derive(Debug)]
pub enum FeedRead {
    /// The next events after the cursor, in order, without a gap (empty: nothing new yet).
    Events(Vec<Arc<Published>>),
    /// Events after the cursor were pruned: the oldest retained is `oldest`. Continue from
    /// `oldest - 1`.
    Reset { oldest: u64 },
}

/// Up to `limit` events after `after` (see [`FeedRead`]). Only durable events are ever returned.
pub async fn read_after(hub: &FeedHub, after: u64, limit: usize) -> Result<FeedRead, ReadError> {
    let limit = limit.max(1);
    match hub.after(after, limit) {
        Tail::Events(events) => Ok(FeedRead::Events(events)),
        Tail::Behind { .. } => read_store(after, limit).await,
    }
}

async fn read_store(after: u64, limit: usize) -> Result<FeedRead, ReadError> {
    let Some(actor) = conversation_actor() else {
        return Err(ReadError::Failed("the store is restarting".to_owned()));
    };
    let answer =
        actor.call(|reply| ConversationMsg::ReadEvents { after, limit, reply }, Some(STORE_READ_TIMEOUT)).await;
    let page = match answer {
        Ok(ractor::rpc::CallResult::Success(result)) => result?,
        Ok(ractor::rpc::CallResult::Timeout) => {
            return Err(ReadError::Failed("reading events from the store timed out".to_owned()));
        }
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
            return Err(ReadError::Failed("the store is restarting".to_owned()));
        }
    };
    if let Some(oldest) = page.oldest
        && after.saturating_add(1) < oldest
    {
        return Ok(FeedRead::Reset { oldest });
    }
    Ok(FeedRead::Events(page.events.into_iter().map(|e| Arc::new(Published::new(e))).collect()))
}

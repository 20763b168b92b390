//! Contact names for Messenger, looked up once per conversation through the User Profile API
//! (`platform::facebook::profile`), inside the Facebook channel actor so that lookups share its
//! token and its pacer.
//!
//! Who sends what: after the flush that stored a webhook, the conversation actor casts
//! `ChannelMsg::NamesWanted` with the Messenger conversations that got a message and have no
//! name. Here each conversation is remembered (this run) and queued; `pump` starts lookups
//! when the channel's `Pacer` has a slot left after the sends and the lookup bucket
//! ([`LOOKUPS_PER_SECOND`]) allows, each in its own task; the answer comes back as
//! `ChannelMsg::NameLooked`, and a name goes to the conversation actor as
//! `ConversationMsg::NameContact`, stored only if the conversation still has none.
//!
//! Failures are harmless: the conversation keeps no name. A temporary failure (transport,
//! throttling, 5xx) is tried once more, later; nothing else is retried in this run. Each error code
//! is logged once at info, then at debug; never with the token (it travels in a header, and no
//! URL is logged).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use ractor::ActorRef;

use super::ChannelState;
use crate::actor::{ChannelMsg, ConversationMsg, conversation_actor};
use crate::model::Platform;
use crate::outbound;
use crate::platform::SendContext;
use crate::platform::facebook::profile::{self, ProfileError};
use crate::ratelimit::TokenBucket;
use crate::store::{UnnamedContact, names_by_lookup};

/// At most this many lookups a second, whatever the channel's send rate leaves free.
pub const LOOKUPS_PER_SECOND: u32 = 5;
/// Lookups running at once.
const MAX_IN_FLIGHT: usize = 2;
/// Lookups waiting; beyond it a conversation is not queued (nor remembered), so its contact's next
/// message asks again.
const MAX_WAITING: usize = 1_000;
/// Conversations remembered as looked up; past it the oldest are forgotten (at worst one more
/// lookup for a contact still without a name).
const MAX_REMEMBERED: usize = 100_000;
/// Tries per lookup: a temporary failure is tried once more.
const MAX_ATTEMPTS: u32 = 2;
/// When a temporary failure is tried again, unless Graph said (`Retry-After`), and the longest
/// wait taken from Graph.
const RETRY_DELAY: Duration = Duration::from_secs(10);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// Distinct error codes logged at info; the rest go to debug.
const MAX_LOGGED_CODES: usize = 64;

/// One conversation to look up.
#[derive(Debug, Clone)]
pub struct Lookup {
    unnamed: UnnamedContact,
    attempt: u32,
    not_before: Instant,
}

/// A lookup's answer (internal to the channel actor).
#[derive(Debug)]
pub struct Looked {
    lookup: Lookup,
    result: Result<Option<String>, ProfileError>,
}

/// The lookups of one channel: what waits, what was tried, the lookup pace.
pub struct NameLookups {
    bucket: TokenBucket,
    waiting: VecDeque<Lookup>,
    tried: HashSet<String>,
    tried_order: VecDeque<String>,
    in_flight: usize,
    logged_codes: HashSet<String>,
}

impl NameLookups {
    /// Lookups for a channel of `platform`; `None` where webhooks carry names or none can be asked.
    pub fn for_platform(platform: Platform) -> Option<NameLookups> {
        names_by_lookup(platform).then(|| NameLookups {
            bucket: TokenBucket::new(LOOKUPS_PER_SECOND, Duration::from_secs(1), 1),
            waiting: VecDeque::new(),
            tried: HashSet::new(),
            tried_order: VecDeque::new(),
            in_flight: 0,
            logged_codes: HashSet::new(),
        })
    }

    /// Queues the conversations not looked up yet in this run.
    pub fn want(&mut self, unnamed: Vec<UnnamedContact>, now: Instant) {
        for unnamed in unnamed {
            if self.tried.contains(&unnamed.conversation_id) {
                continue;
            }
            if self.waiting.len() >= MAX_WAITING {
                tracing::debug!(message = "Too many name lookups waiting; this one waits for the contact's next message.", conversation_id = %unnamed.conversation_id);
                continue;
            }
            self.remember(&unnamed.conversation_id);
            self.waiting.push_back(Lookup { unnamed, attempt: 1, not_before: now });
        }
    }

    fn remember(&mut self, conversation_id: &str) {
        if self.tried.insert(conversation_id.to_owned()) {
            self.tried_order.push_back(conversation_id.to_owned());
            if self.tried_order.len() > MAX_REMEMBERED
                && let Some(oldest) = self.tried_order.pop_front()
            {
                self.tried.remove(&oldest);
            }
        }
    }

    /// The first waiting lookup that may go at `now`, or when the earliest will.
    fn due(&self, now: Instant) -> Result<usize, Option<Instant>> {
        match self.waiting.iter().position(|l| l.not_before <= now) {
            Some(index) => Ok(index),
            None => Err(self.waiting.iter().map(|l| l.not_before).min()),
        }
    }

    /// Logs a failed lookup: the first time for its code at info, later at debug.
    fn log_failure(&mut self, lookup: &Lookup, error: &ProfileError, retried: bool) {
        let code = error.code().to_owned();
        let first = self.logged_codes.len() < MAX_LOGGED_CODES && self.logged_codes.insert(code.clone());
        let conversation_id = &lookup.unnamed.conversation_id;
        if retried {
            tracing::debug!(message = "Contact name lookup failed for now; trying once more later.", %conversation_id, %code, reason = %error);
        } else if first {
            tracing::info!(message = "Contact name lookup failed; the conversation stays without a name (later failures with this code are logged at debug).", %conversation_id, %code, reason = %error);
        } else {
            tracing::debug!(message = "Contact name lookup failed; the conversation stays without a name.", %conversation_id, %code, reason = %error);
        }
    }
}

/// Starts the lookups that may go now, after the sends `pump` started: each takes a slot from the
/// channel's pacer (so sends and lookups together stay under the channel's rate) and one from the
/// lookup bucket. Returns when to look again, if a lookup waits.
pub(super) fn start(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, now: Instant) -> Option<Instant> {
    let names = state.names.as_mut()?;
    if state.token.is_empty() {
        // Nothing to ask with; the channel reports its missing credentials itself.
        names.waiting.clear();
        return None;
    }
    let mut starting = Vec::new();
    let wake = loop {
        if names.in_flight >= MAX_IN_FLIGHT || names.waiting.is_empty() {
            break None;
        }
        let index = match names.due(now) {
            Ok(index) => index,
            Err(when) => break when,
        };
        let ready = names.bucket.ready_at(now).max(state.scheduler.pacer().ready_at(now));
        if ready > now {
            break Some(ready);
        }
        if let Err(when) = state.scheduler.pacer().try_take(now) {
            break Some(when);
        }
        let _ = names.bucket.try_take(now);
        let Some(lookup) = names.waiting.remove(index) else { break None };
        names.in_flight += 1;
        starting.push(lookup);
    };
    for lookup in starting {
        spawn_lookup(myself, state, lookup);
    }
    wake
}

/// Runs one lookup in its own task; the answer comes back as `NameLooked`.
fn spawn_lookup(myself: &ActorRef<ChannelMsg>, state: &ChannelState, lookup: Lookup) {
    let ctx = SendContext {
        api_base: &state.args.send.api_base,
        account_id: &state.args.account_id,
        access_token: &state.token,
        sender_name: &state.args.send.sender_name,
        api_version: &state.args.send.api_version,
    };
    let request = match profile::build_profile_request(&ctx, &lookup.unnamed.contact_id) {
        Ok(request) => request,
        Err(error) => {
            let _ = myself.cast(ChannelMsg::NameLooked(Looked { lookup, result: Err(error) }));
            return;
        }
    };
    let client = state.client.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let result = match outbound::execute(&client, &request).await {
            Ok(response) => profile::parse_profile(&response),
            Err(e) => {
                Err(ProfileError::Temporary { code: "transport".into(), message: e.to_string(), retry_after: None })
            }
        };
        let _ = me.cast(ChannelMsg::NameLooked(Looked { lookup, result }));
    });
}

/// A lookup ended: store the name, try a temporary failure once more, or leave it.
pub(super) fn looked(state: &mut ChannelState, looked: Looked) {
    let Some(names) = state.names.as_mut() else { return };
    names.in_flight = names.in_flight.saturating_sub(1);
    let Looked { mut lookup, result } = looked;
    let conversation_id = lookup.unnamed.conversation_id.clone();
    match result {
        Ok(Some(name)) => {
            tracing::debug!(message = "Contact name found.", %conversation_id);
            match conversation_actor() {
                Some(store) => {
                    let _ = store.cast(ConversationMsg::NameContact { conversation_id, name });
                }
                None => {
                    tracing::debug!(message = "Store is restarting; the contact name is not kept.", %conversation_id)
                }
            }
        }
        Ok(None) => tracing::debug!(message = "Graph gave no name for the contact.", %conversation_id),
        Err(error) => {
            let retry = error.is_temporary() && lookup.attempt < MAX_ATTEMPTS && names.waiting.len() < MAX_WAITING;
            names.log_failure(&lookup, &error, retry);
            if retry {
                let after = match &error {
                    ProfileError::Temporary { retry_after: Some(after), .. } => (*after).min(MAX_RETRY_DELAY),
                    _ => RETRY_DELAY,
                };
                lookup.attempt += 1;
                lookup.not_before = Instant::now() + after;
                names.waiting.push_back(lookup);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unnamed(n: u32) -> UnnamedContact {
        UnnamedContact { conversation_id: format!("c{n}"), contact_id: format!("72123456789{n:05}") }
    }

    #[test]
    fn only_messenger_looks_names_up() {
        assert!(NameLookups::for_platform(Platform::Facebook).is_some());
        for platform in [Platform::Whatsapp, Platform::Viber, Platform::Linkedin] {
            assert!(NameLookups::for_platform(platform).is_none(), "{platform}");
        }
    }

    #[test]
    fn a_conversation_is_queued_once_per_run() {
        let mut names = NameLookups::for_platform(Platform::Facebook).unwrap();
        let now = Instant::now();
        names.want(vec![unnamed(1), unnamed(2)], now);
        names.want(vec![unnamed(1)], now);
        assert_eq!(names.waiting.len(), 2);
        names.waiting.clear();
        names.want(vec![unnamed(1), unnamed(2)], now);
        assert!(names.waiting.is_empty(), "taken from the queue is still remembered");
    }

    #[test]
    fn a_full_queue_skips_without_remembering() {
        let mut names = NameLookups::for_platform(Platform::Facebook).unwrap();
        let now = Instant::now();
        names.want((0..MAX_WAITING as u32 + 5).map(unnamed).collect(), now);
        assert_eq!(names.waiting.len(), MAX_WAITING);
        names.waiting.pop_front();
        names.want(vec![unnamed(MAX_WAITING as u32 + 1)], now);
        assert_eq!(names.waiting.len(), MAX_WAITING, "a skipped conversation is queued when it comes again");
    }

    #[test]
    fn a_retry_waits_for_its_time_and_others_go_first() {
        let mut names = NameLookups::for_platform(Platform::Facebook).unwrap();
        let now = Instant::now();
        names.waiting.push_back(Lookup { unnamed: unnamed(1), attempt: 2, not_before: now + RETRY_DELAY });
        assert_eq!(names.due(now), Err(Some(now + RETRY_DELAY)));
        names.want(vec![unnamed(2)], now);
        assert_eq!(names.due(now), Ok(1));
        assert_eq!(names.due(now + RETRY_DELAY), Ok(0));
    }
}

//! A platform's channel actor.
//!
//! Inbound, it parses verified bodies with the platform module's pure code and hands the events to
//! the conversation actor, passing the HTTP request's reply port along so the answer waits for the
//! durable write without holding this actor.
//!
//! Outbound, it owns sending: a queue per conversation (a later reply never overtakes an earlier
//! one, retries included), round-robin across conversations with a bound on requests in flight, a
//! token bucket that paces every request below the configured rate, WhatsApp's per-recipient limit,
//! retries with back-off until a deadline, and the token (checked, refreshed, persisted). The queue
//! is rebuilt from the store's outbox at start, so nothing queued is lost across a restart.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::actions::{ActionQueue, Next};
use super::scheduler::{AfterAttempt, BROKEN_TOKEN_RECHECK, Limits, Moment, SendScheduler};
use super::tokens;
pub use super::tokens::TokenSource;
use super::{ChannelMsg, ChannelStatus, ConversationMsg, EnqueueRefusal, PersistError, TokenCheck, conversation_actor};
use crate::config::{Config, OutboundConfig};
use crate::model::{MessageError, OutboundAction, Platform, Timestamp};
use crate::outbound;
use crate::platform::{self, ActionOutcome, ParseContext, SendAccount, SendContext, SendOutcome};
use crate::secret::Secret;
use crate::store::{ChannelStatusChange, OutboxEntry};

pub mod names;

/// How often the outbox in the store is merged into the queue.
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// Warn when the token expires sooner than this.
const TOKEN_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a reply's durable write may take before the API is answered 503.
const STORE_WRITE_WAIT: Duration = Duration::from_secs(15);

/// The actor behaviour; one instance per enabled platform.
pub struct ChannelActor;

/// What a channel needs to send.
#[derive(Clone, Debug)]
pub struct SendSettings {
    pub api_base: String,
    /// The credential from the configuration.
    pub token: Secret,
    pub sender_name: String,
    pub api_version: String,
    /// At most `rate` requests per `period`.
    pub rate: u32,
    pub period: Duration,
    /// WhatsApp's pair limit: one per interval per recipient, with a burst.
    pub per_recipient: Option<(Duration, u32)>,
    pub outbound: OutboundConfig,
    pub token_source: TokenSource,
}

impl SendSettings {
    /// True when the channel has something to send with: a token, or a user token to exchange.
    pub fn has_credentials(&self) -> bool {
        !self.token.is_empty()
            || matches!(&self.token_source, TokenSource::Meta { user_access_token, .. } if !user_access_token.is_empty())
    }
}

/// What a channel needs to know about its platform.
#[derive(Clone, Debug)]
pub struct ChannelArgs {
    pub platform: Platform,
    /// Our account on the platform, for bodies that do not name it and for sends.
    pub account_id: String,
    pub send: SendSettings,
}

impl ChannelArgs {
    /// Everything a platform's channel actor needs from the configuration.
    pub fn from_config(config: &Config, platform: Platform) -> ChannelArgs {
        let (api_base, token, rate, period, per_recipient, token_source) = match platform {
            Platform::Facebook => {
                let fb = &config.facebook;
                (
                    fb.api_base.clone(),
                    fb.page_access_token.clone(),
                    fb.rate_per_second,
                    Duration::from_secs(1),
                    None,
                    TokenSource::Meta {
                        app_id: fb.app_id.clone(),
                        app_secret: fb.app_secret.clone(),
                        user_access_token: fb.user_access_token.clone(),
                        page_id: Some(fb.page_id.clone()),
                    },
                )
            }
            Platform::Whatsapp => {
                let wa = &config.whatsapp;
                (
                    wa.api_base.clone(),
                    wa.access_token.clone(),
                    wa.rate_per_second,
                    Duration::from_secs(1),
                    Some((Duration::from_secs(wa.per_recipient_interval_secs), wa.per_recipient_burst)),
                    TokenSource::Meta {
                        app_id: config.facebook.app_id.clone(),
                        app_secret: wa.app_secret.clone(),
                        user_access_token: crate::secret::Secret::default(),
                        page_id: None,
                    },
                )
            }
            Platform::Viber => {
                let vb = &config.viber;
                (
                    vb.api_base.clone(),
                    vb.bot_token.clone(),
                    vb.rate_per_minute,
                    Duration::from_secs(60),
                    None,
                    TokenSource::Viber,
                )
            }
            Platform::Linkedin => {
                let li = &config.linkedin;
                (
                    li.api_base.clone(),
                    li.access_token.clone(),
                    li.rate_per_minute,
                    Duration::from_secs(60),
                    None,
                    TokenSource::Linkedin {
                        oauth_base: li.oauth_base.clone(),
                        client_id: li.client_id.clone(),
                        client_secret: li.client_secret.clone(),
                        refresh_token: li.refresh_token.clone(),
                    },
                )
            }
        };
        ChannelArgs {
            platform,
            account_id: config.account_id(platform),
            send: SendSettings {
                api_base,
                token,
                sender_name: config.viber.bot_name.clone(),
                api_version: config.linkedin.api_version.clone(),
                rate,
                period,
                per_recipient,
                outbound: config.outbound.clone(),
                token_source,
            },
        }
    }
}

/// Mutable state of a channel actor.
pub struct ChannelState {
    args: ChannelArgs,
    client: reqwest::Client,
    token: Secret,
    token_expires_at: Option<Timestamp>,
    /// Why the channel cannot send (the token was rejected and could not be refreshed).
    broken: Option<String>,
    /// What the last `channel.status` event said: ready (or why not), and whether the token was
    /// near its expiry. None before the first.
    reported: Option<(Option<String>, bool)>,
    /// A token check or refresh is under way; sending waits for it after a rejection.
    refreshing: bool,
    /// False while the store cannot be written: sending waits, so that every `sent` is recorded.
    store_writable: bool,
    /// Queues, round robin, pacing and retry decisions (`scheduler.rs`, pure).
    scheduler: SendScheduler,
    wake_at: Option<Instant>,
    wake: Option<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<ChannelMsg>>>>,
    /// The timer of periodic token checks (restarted when the interval is reconfigured).
    token_checks: Option<tokio::task::JoinHandle<()>>,
    /// Engagement actions waiting to go (`actions.rs`), each with the caller's reply port.
    actions: ActionQueue<ActionReply>,
    /// Replies being stored now: counted against `outbound.max_queued` with the queued ones.
    storing: usize,
    /// Messenger's contact name lookups (`names.rs`); `None` on the other channels.
    names: Option<names::NameLookups>,
}

/// Where an engagement action's caller waits for how it ended.
type ActionReply = ractor::RpcReplyPort<Result<(), MessageError>>;

impl ChannelState {
    fn queued(&self) -> usize {
        self.scheduler.queued()
    }

    /// Our account on the platform, without the credential (what validating a reply needs).
    fn account(&self) -> SendAccount {
        SendAccount {
            api_base: self.args.send.api_base.clone(),
            account_id: self.args.account_id.clone(),
            sender_name: self.args.send.sender_name.clone(),
            api_version: self.args.send.api_version.clone(),
        }
    }

    fn send_context(&self) -> SendContext<'_> {
        SendContext {
            api_base: &self.args.send.api_base,
            account_id: &self.args.account_id,
            access_token: &self.token,
            sender_name: &self.args.send.sender_name,
            api_version: &self.args.send.api_version,
        }
    }

    /// Asks for a `Pump` at `when`, unless one is due earlier already.
    fn wake_at(&mut self, myself: &ActorRef<ChannelMsg>, when: Instant) {
        if self.wake_at.is_some_and(|at| at <= when) && self.wake.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(handle) = self.wake.take() {
            handle.abort();
        }
        self.wake_at = Some(when);
        let delay = when.saturating_duration_since(Instant::now());
        self.wake = Some(myself.send_after(delay, || ChannelMsg::Pump));
    }

    /// Records a `channel.status` event when readiness or the token's nearness to expiry changed
    /// since the last one (the first report says how the channel started).
    fn report_status(&mut self) {
        let left = self.token_expires_at.map(|at| (at.as_millis() - Timestamp::now().as_millis()) / 1000);
        let expiring = left.is_some_and(|secs| secs < TOKEN_WARNING.as_secs() as i64);
        let now = (self.broken.clone(), expiring);
        if self.reported.as_ref() == Some(&now) {
            return;
        }
        let reason = match (&now.0, expiring) {
            (Some(reason), _) => Some(reason.clone()),
            (None, true) => Some("the token expires within 7 days".to_owned()),
            (None, false) => None,
        };
        let change = ChannelStatusChange {
            platform: self.args.platform,
            ready: now.0.is_none(),
            reason,
            token_expires_in_secs: left,
        };
        if let Some(store) = conversation_actor()
            && store.cast(ConversationMsg::ChannelStatus(change)).is_ok()
        {
            self.reported = Some(now);
        }
    }

    fn status(&self) -> ChannelStatus {
        ChannelStatus {
            platform: self.args.platform,
            ready: self.broken.is_none(),
            reason: self.broken.clone(),
            token_expires_in_secs: self
                .token_expires_at
                .map(|at| (at.as_millis() - Timestamp::now().as_millis()) / 1000),
            queued: self.queued(),
            in_flight: self.scheduler.in_flight(),
            sent: self.scheduler.sent,
            failed: self.scheduler.failed,
            retried: self.scheduler.retried,
        }
    }
}

/// The scheduler's limits from the channel's send settings.
fn limits_of(send: &SendSettings) -> Limits {
    Limits {
        rate: send.rate,
        period: send.period,
        per_recipient: send.per_recipient,
        max_in_flight: send.outbound.max_in_flight,
        initial_backoff: Duration::from_millis(send.outbound.initial_backoff_ms),
        max_backoff: Duration::from_millis(send.outbound.max_backoff_ms),
    }
}

/// The earlier of two wake-up times, either of which may be absent.
fn sooner(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why an action cannot go: the channel is not ready.
fn not_ready(reason: &str) -> MessageError {
    MessageError { code: "channel_not_ready".into(), message: reason.to_owned(), permanent: false }
}

impl ChannelActor {
    /// Sends what may be sent now; schedules a wake-up for what must wait.
    fn pump(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState) {
        if let Some(reason) = &state.broken {
            let error = not_ready(reason);
            for (reply, error) in state.actions.drain(&error) {
                let _ = reply.send(Err(error));
            }
            return;
        }
        if state.refreshing {
            return;
        }
        let now = Instant::now();
        // Actions go first and need no store; messages wait while the store cannot record them.
        let mut earliest = Self::pump_actions(myself, state, now);
        if !state.store_writable {
            if let Some(when) = earliest {
                state.wake_at(myself, when);
            }
            return;
        }
        let (sends, wake) = state.scheduler.next_sends(now);
        earliest = sooner(earliest, wake);
        for entry in sends {
            Self::attempt(myself, state, entry);
        }
        earliest = sooner(earliest, names::start(myself, state, now));
        if let Some(when) = earliest {
            state.wake_at(myself, when);
        }
    }

    /// Sends the next request of the oldest engagement action if it may go now; else when to
    /// look again.
    fn pump_actions(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, now: Instant) -> Option<Instant> {
        let platform = state.args.platform;
        for (reply, error) in state.actions.expire(now) {
            tracing::info!(message = "Engagement action given up.", %platform, reason = %error.message);
            let _ = reply.send(Err(error));
        }
        let (id, action, step) = match state.actions.next(now) {
            Next::Idle => return None,
            Next::WaitUntil(at) => return Some(at),
            Next::Send { id, action, step } => (id, action.clone(), step),
        };
        if let Err(when) = state.scheduler.pacer().try_take(now) {
            return Some(when);
        }
        state.actions.started(id);
        let request = platform::build_action_requests(platform, &state.send_context(), &action)
            .ok()
            .and_then(|mut requests| (step < requests.len()).then(|| requests.swap_remove(step)));
        let Some(request) = request else {
            // Validated when queued, so only a configuration change gets here.
            let error =
                MessageError { code: "invalid".into(), message: "the action no longer builds".into(), permanent: true };
            let _ = myself.cast(ChannelMsg::ActionAttempted { id, outcome: ActionOutcome::Failed(error) });
            return None;
        };
        let client = state.client.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = outbound::execute(&client, &request).await;
            crate::metrics::metrics().send_request(platform, started.elapsed());
            let outcome = match response {
                Ok(response) => platform::classify_action_response(platform, &response),
                Err(e) => ActionOutcome::Retry {
                    after: None,
                    error: MessageError { code: "transport".into(), message: e.to_string(), permanent: false },
                },
            };
            let _ = me.cast(ChannelMsg::ActionAttempted { id, outcome });
        });
        None
    }

    /// Has a reply stored and then sends it, or refuses it: the bound is checked and a place
    /// taken in one step of this actor, and the write is awaited in a task, so that the channel
    /// goes on sending meanwhile. The caller is answered from the task, whatever happens to this
    /// actor meanwhile (a restarted channel finds the reply in the outbox).
    fn enqueue(
        myself: &ActorRef<ChannelMsg>,
        state: &mut ChannelState,
        target: crate::store::ConversationTarget,
        draft: Box<crate::model::OutboundDraft>,
        reply: ractor::RpcReplyPort<Result<crate::model::Message, EnqueueRefusal>>,
    ) {
        let platform = state.args.platform;
        if !state.args.send.has_credentials() {
            let _ = reply.send(Err(EnqueueRefusal::NotConfigured { platform }));
            return;
        }
        let waiting = state.queued() + state.storing;
        if waiting >= state.args.send.outbound.max_queued {
            let _ = reply.send(Err(EnqueueRefusal::QueueFull { platform, waiting }));
            return;
        }
        let Some(store) = conversation_actor() else {
            let _ = reply.send(Err(EnqueueRefusal::StoreUnavailable));
            return;
        };
        state.storing += 1;
        let account = state.account();
        let retry_deadline_ms = (state.args.send.outbound.retry_deadline_secs as i64).saturating_mul(1000);
        let me = myself.clone();
        tokio::spawn(async move {
            let stored = store
                .call(
                    |reply| ConversationMsg::Enqueue { target, draft: *draft, account, retry_deadline_ms, reply },
                    Some(STORE_WRITE_WAIT),
                )
                .await;
            let (entry, answer) = match stored {
                Ok(ractor::rpc::CallResult::Success(Ok((message, entry)))) => (Some(Box::new(entry)), Ok(message)),
                Ok(ractor::rpc::CallResult::Success(Err(e))) => (None, Err(EnqueueRefusal::Store(e))),
                _ => (None, Err(EnqueueRefusal::StoreUnavailable)),
            };
            let _ = me.cast(ChannelMsg::Stored(entry));
            let _ = reply.send(answer);
        });
    }

    /// Queues an engagement action (checked with the platform's builder first), or refuses it.
    fn act(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, action: OutboundAction, reply: ActionReply) {
        if let Some(reason) = &state.broken {
            let _ = reply.send(Err(not_ready(reason)));
            return;
        }
        let steps = match platform::build_action_requests(state.args.platform, &state.send_context(), &action) {
            Ok(requests) => requests.len(),
            Err(e) => {
                let _ =
                    reply.send(Err(MessageError { code: "invalid".into(), message: e.to_string(), permanent: true }));
                return;
            }
        };
        if let Err(reply) = state.actions.push(action, steps, reply, Instant::now()) {
            let message = format!("{} engagement actions are waiting; try again later", state.actions.len());
            let _ = reply.send(Err(MessageError { code: "queue_full".into(), message, permanent: false }));
            return;
        }
        Self::pump(myself, state);
    }

    /// A request of an engagement action ended.
    fn action_attempted(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, id: u64, outcome: ActionOutcome) {
        let platform = state.args.platform;
        let token_rejected = matches!(outcome, ActionOutcome::TokenRejected(_));
        let wait = state.scheduler.backoff_for(rand::random::<f64>());
        if let Some((reply, result)) = state.actions.answered(id, outcome, Instant::now(), wait) {
            match &result {
                Ok(()) => tracing::debug!(message = "Engagement action sent.", %platform),
                Err(e) => tracing::info!(message = "Engagement action failed.", %platform, code = %e.code),
            }
            let _ = reply.send(result);
        }
        if token_rejected && !state.refreshing {
            state.refreshing = true;
            let _ = myself.cast(ChannelMsg::CheckToken { after_rejection: true });
        }
        Self::pump(myself, state);
    }

    /// Starts one send request in its own task; the answer comes back as `Attempted`.
    fn attempt(myself: &ActorRef<ChannelMsg>, state: &ChannelState, entry: OutboxEntry) {
        let platform = state.args.platform;
        let conversation_id = entry.conversation_id.clone();
        let message_id = entry.message.id.clone();
        let request = match platform::build_send_request(platform, &state.send_context(), &entry.message) {
            Ok(request) => request,
            Err(e) => {
                // Validated when queued, so only a configuration change gets here.
                let outcome = SendOutcome::Failed(MessageError {
                    code: "invalid".into(),
                    message: e.to_string(),
                    permanent: true,
                });
                let _ = myself.cast(ChannelMsg::Attempted {
                    conversation_id,
                    message_id,
                    dispatched_at: Timestamp::now(),
                    outcome,
                });
                return;
            }
        };
        if let Some(store) = conversation_actor() {
            let _ = store.cast(ConversationMsg::MarkSending { message_id: message_id.clone() });
        }
        let client = state.client.clone();
        let me = myself.clone();
        // The moment the pacer released the request: what the rate limit is kept on (the task
        // below may start a little later on a busy host).
        let dispatched_at = Timestamp::now();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = outbound::execute(&client, &request).await;
            crate::metrics::metrics().send_request(platform, started.elapsed());
            let outcome = match response {
                Ok(response) => platform::classify_send_response(platform, &response),
                Err(e) => SendOutcome::Retry {
                    after: None,
                    error: MessageError { code: "transport".into(), message: e.to_string(), permanent: false },
                    recipient_only: false,
                },
            };
            let _ = me.cast(ChannelMsg::Attempted { conversation_id, message_id, dispatched_at, outcome });
        });
    }

    fn attempted(
        myself: &ActorRef<ChannelMsg>,
        state: &mut ChannelState,
        conversation_id: String,
        message_id: String,
        dispatched_at: Timestamp,
        outcome: SendOutcome,
    ) {
        let platform = state.args.platform;
        let after = state.scheduler.attempted(
            &conversation_id,
            &message_id,
            dispatched_at,
            outcome,
            Moment { now: Instant::now(), at: Timestamp::now(), jitter: rand::random::<f64>() },
        );
        let store = conversation_actor();
        match after {
            AfterAttempt::Stale => return,
            AfterAttempt::Sent { entry, platform_message_id, dispatched_at, attempts } => {
                tracing::info!(message = "Message sent.", %platform, %message_id, attempts);
                if let Some(store) = store {
                    let _ = store.cast(ConversationMsg::MarkSent { entry, platform_message_id, dispatched_at });
                }
            }
            AfterAttempt::Failed { entry, error } => {
                tracing::warn!(message = "Message failed.", %platform, %message_id, code = %error.code, reason = %error.message);
                if let Some(store) = store {
                    let _ = store.cast(ConversationMsg::MarkFailed { entry, error });
                }
            }
            AfterAttempt::DeadlinePassed { entry, error, attempts } => {
                tracing::warn!(message = "Message failed: retry deadline passed.", %platform, %message_id, code = %error.code, attempts);
                if let Some(store) = store {
                    let _ = store.cast(ConversationMsg::MarkFailed { entry, error });
                }
            }
            AfterAttempt::Retrying { delay, error } => {
                tracing::info!(message = "Send failed for now; retrying.", %platform, %message_id, code = %error.code, delay_ms = delay.as_millis() as u64);
            }
            AfterAttempt::TokenBroken { reason } => {
                tracing::error!(message = "Channel not ready: token rejected.", %platform, reason = %reason);
                state.broken = Some(reason);
                state.report_status();
                myself.send_after(BROKEN_TOKEN_RECHECK, || ChannelMsg::CheckToken { after_rejection: true });
            }
            AfterAttempt::RefreshToken { error } => {
                tracing::warn!(message = "Token rejected; refreshing once.", %platform, code = %error.code);
                if !state.refreshing {
                    state.refreshing = true;
                    let _ = myself.cast(ChannelMsg::CheckToken { after_rejection: true });
                }
            }
        }
        Self::pump(myself, state);
    }

    /// (Re)starts the periodic token check at the configured interval.
    fn schedule_token_checks(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState) {
        if let Some(timer) = state.token_checks.take() {
            timer.abort();
        }
        let every = Duration::from_secs(state.args.send.outbound.token_check_interval_secs);
        state.token_checks = Some(myself.send_interval(every, || ChannelMsg::CheckToken { after_rejection: false }));
    }

    /// Takes new send settings from a reload. The queues are untouched: nothing queued is lost,
    /// requests in flight finish with the settings they started with, and the next sends use the
    /// new ones (rate, credentials, API address, timeouts, retry policy).
    fn reconfigure(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, send: SendSettings) {
        let platform = state.args.platform;
        let old = std::mem::replace(&mut state.args.send, send);
        let new = &state.args.send;
        let now = Instant::now();
        state.scheduler.retune(limits_of(new), now);
        if old.outbound.request_timeout_secs != new.outbound.request_timeout_secs {
            state.client = outbound::client(Duration::from_secs(new.outbound.request_timeout_secs));
        }
        let token_changed = old.token != new.token;
        let credentials_changed = token_changed || old.token_source != new.token_source || old.api_base != new.api_base;
        if old.outbound.token_check_interval_secs != new.outbound.token_check_interval_secs {
            Self::schedule_token_checks(myself, state);
        }
        if token_changed {
            // A token kept from an earlier refresh was derived from the old configured one.
            state.token = state.args.send.token.clone();
            state.token_expires_at = None;
        }
        if credentials_changed {
            if state.broken.take().is_some() {
                tracing::info!(message = "New credentials configured; checking them before sending again.", %platform);
            }
            Self::check_token(myself, state, false);
        }
        tracing::info!(message = "Send settings reloaded.", %platform, queued = state.queued(), credentials_changed);
        Self::pump(myself, state);
    }

    /// Fails queued messages whose deadline passed while the channel could not send.
    fn expire(state: &mut ChannelState) {
        let store = conversation_actor();
        for (entry, error) in state.scheduler.expire(Timestamp::now()) {
            if let Some(store) = &store {
                let _ = store.cast(ConversationMsg::MarkFailed { entry, error });
            }
        }
    }

    async fn reload_outbox(state: &mut ChannelState) {
        let Some(store) = conversation_actor() else { return };
        let platform = state.args.platform;
        match ractor::call_t!(store, |reply| ConversationMsg::LoadOutbox { platform, reply }, 10_000) {
            Ok(Ok(entries)) => {
                let before = state.queued();
                let now = Instant::now();
                for entry in entries {
                    state.scheduler.add(entry, now);
                }
                if state.queued() > before {
                    tracing::info!(message = "Outbox loaded.", %platform, added = state.queued() - before);
                }
            }
            Ok(Err(e)) => tracing::warn!(message = "Reading the outbox failed.", %platform, error = %e),
            Err(e) => tracing::warn!(message = "The store did not answer for the outbox.", %platform, error = %e),
        }
    }

    /// Starts a token check (and refresh where possible) in its own task.
    fn check_token(myself: &ActorRef<ChannelMsg>, state: &ChannelState, after_rejection: bool) {
        let client = state.client.clone();
        let settings = state.args.send.clone();
        let token = state.token.clone();
        let expires_at = state.token_expires_at;
        let me = myself.clone();
        tokio::spawn(async move {
            let result = tokens::check(&client, &settings, &token, expires_at, after_rejection).await;
            let _ = me.cast(ChannelMsg::TokenChecked(result));
        });
    }

    async fn token_checked(myself: &ActorRef<ChannelMsg>, state: &mut ChannelState, result: TokenCheck) {
        let platform = state.args.platform;
        let was_refreshing = std::mem::replace(&mut state.refreshing, false);
        match result {
            TokenCheck::Valid { expires_at, replacement } => {
                if let Some(stored) = replacement {
                    state.token = stored.access_token.clone();
                    if let Some(store) = conversation_actor() {
                        match ractor::call_t!(
                            store,
                            |reply| ConversationMsg::SaveToken { platform, token: stored, reply },
                            10_000
                        ) {
                            Ok(Ok(())) => tracing::info!(message = "Token refreshed and kept.", %platform),
                            _ => {
                                tracing::warn!(message = "A refreshed token could not be kept; it is used until restart.", %platform)
                            }
                        }
                    }
                }
                state.token_expires_at = expires_at;
                if let Some(at) = expires_at {
                    let left = at.as_millis() - Timestamp::now().as_millis();
                    if left < TOKEN_WARNING.as_millis() as i64 {
                        tracing::warn!(message = "Token expires soon.", %platform, seconds_left = left / 1000);
                    }
                }
                if state.broken.take().is_some() {
                    tracing::info!(message = "Channel ready again: token accepted.", %platform);
                }
            }
            TokenCheck::Invalid(reason) => {
                tracing::error!(message = "Channel not ready: token invalid.", %platform, reason = %reason);
                state.broken = Some(reason);
                myself.send_after(BROKEN_TOKEN_RECHECK, || ChannelMsg::CheckToken { after_rejection: true });
            }
            TokenCheck::Unreachable(reason) => {
                tracing::warn!(message = "Token check could not reach the platform.", %platform, reason = %reason);
                if was_refreshing {
                    // The rejected message waits; ask again shortly.
                    state.refreshing = true;
                    myself.send_after(Duration::from_secs(5), || ChannelMsg::CheckToken { after_rejection: true });
                }
            }
            TokenCheck::NotChecked => {}
        }
        state.report_status();
        Self::pump(myself, state);
    }
}

impl Actor for ChannelActor {
    type Msg = ChannelMsg;
    type State = ChannelState;
    type Arguments = ChannelArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: ChannelArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let send = &args.send;
        let client = outbound::client(Duration::from_secs(send.outbound.request_timeout_secs));
        Ok(ChannelState {
            token: send.token.clone(),
            client,
            token_expires_at: None,
            broken: None,
            reported: None,
            refreshing: false,
            store_writable: true,
            scheduler: SendScheduler::new(limits_of(send)),
            wake_at: None,
            wake: None,
            token_checks: None,
            actions: ActionQueue::default(),
            storing: 0,
            names: names::NameLookups::for_platform(args.platform),
            args,
        })
    }

    async fn post_start(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let platform = state.args.platform;
        let stored = match conversation_actor() {
            Some(store) => ractor::call_t!(store, |reply| ConversationMsg::LoadToken { platform, reply }, 10_000),
            None => Ok(Ok(None)),
        };
        if let Ok(Ok(Some(stored))) = stored
            && stored.derived_from == tokens::fingerprint(&state.args.send.token)
        {
            state.token = stored.access_token;
            state.token_expires_at = stored.expires_at;
            tracing::info!(message = "Using the token kept from an earlier refresh.", %platform);
        }
        Self::reload_outbox(state).await;
        Self::check_token(&myself, state, false);
        myself.send_interval(RELOAD_EVERY, || ChannelMsg::ReloadOutbox);
        Self::schedule_token_checks(&myself, state);
        Self::pump(&myself, state);
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.token_checks.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ChannelMsg::Webhook { body, received_at, delivery_id, reply } => {
                let platform = state.args.platform;
                let ctx = ParseContext { account_id: &state.args.account_id, received_at };
                // The parsers are pure and written not to panic; if one does anyway, the body is
                // quarantined instead of crashing the channel on every redelivery of it.
                let parsed =
                    std::panic::catch_unwind(AssertUnwindSafe(|| platform::parse_webhook(platform, &body, &ctx)))
                        .unwrap_or_else(|_| {
                            Err(platform::ParseError::NotJson("the parser panicked on this body".into()))
                        });
                let Some(store) = conversation_actor() else {
                    tracing::warn!(message = "Store is restarting; webhook refused.", %platform, %delivery_id);
                    let _ = reply.send(Err(PersistError::Failed("the store is restarting".into())));
                    return Ok(());
                };
                let request = match parsed {
                    Ok(events) => {
                        tracing::debug!(message = "Webhook parsed.", %platform, %delivery_id, events = events.len());
                        ConversationMsg::Ingest { platform, events, received_at, reply }
                    }
                    Err(e) => {
                        tracing::warn!(message = "Webhook not understood; body quarantined.", %platform, %delivery_id, reason = %e);
                        ConversationMsg::Quarantine { platform, reason: e.to_string(), body, received_at, reply }
                    }
                };
                if let Err(e) = store.cast(request) {
                    // The store died between the lookup and the send: the reply port is dropped with
                    // the message, and the HTTP side answers 503.
                    tracing::warn!(message = "Store went away; webhook refused.", %platform, %delivery_id, error = %e);
                }
            }
            ChannelMsg::Enqueue { target, draft, reply } => Self::enqueue(&myself, state, target, draft, reply),
            ChannelMsg::Stored(entry) => {
                state.storing = state.storing.saturating_sub(1);
                if let Some(entry) = entry {
                    tracing::info!(message = "Reply queued.", platform = %state.args.platform, message_id = %entry.message.id);
                    state.scheduler.add(*entry, Instant::now());
                    Self::pump(&myself, state);
                }
            }
            ChannelMsg::Queued(entry) => {
                state.scheduler.add(*entry, Instant::now());
                Self::pump(&myself, state);
            }
            ChannelMsg::Pump => {
                state.wake_at = None;
                Self::pump(&myself, state);
            }
            ChannelMsg::Attempted { conversation_id, message_id, dispatched_at, outcome } => {
                Self::attempted(&myself, state, conversation_id, message_id, dispatched_at, outcome);
            }
            ChannelMsg::ReloadOutbox => {
                Self::reload_outbox(state).await;
                if state.broken.is_some() {
                    Self::expire(state);
                }
                state.scheduler.forget_idle_recipients(Instant::now());
                Self::pump(&myself, state);
            }
            ChannelMsg::CheckToken { after_rejection } => {
                if after_rejection {
                    state.refreshing = true;
                }
                Self::check_token(&myself, state, after_rejection);
            }
            ChannelMsg::TokenChecked(result) => Self::token_checked(&myself, state, result).await,
            ChannelMsg::GetStatus(reply) => {
                let _ = reply.send(state.status());
            }
            ChannelMsg::Reconfigure(send) => Self::reconfigure(&myself, state, *send),
            ChannelMsg::Act { action, reply } => Self::act(&myself, state, action, reply),
            ChannelMsg::ActionAttempted { id, outcome } => Self::action_attempted(&myself, state, id, outcome),
            ChannelMsg::StoreWritable(writable) => {
                if writable != state.store_writable {
                    tracing::info!(message = if writable { "Store writable again; sending resumes." } else { "Store not writable; sending paused." }, platform = %state.args.platform);
                }
                state.store_writable = writable;
                Self::pump(&myself, state);
            }
            ChannelMsg::NamesWanted(unnamed) => {
                if let Some(lookups) = &mut state.names {
                    lookups.want(unnamed, Instant::now());
                    Self::pump(&myself, state);
                }
            }
            ChannelMsg::NameLooked(looked) => {
                names::looked(state, looked);
                Self::pump(&myself, state);
            }
        }
        Ok(())
    }
}

//! The supervisor: starts and links the conversation actor and one channel actor per enabled
//! platform, restarts a failed child after a back-off, and gives up (the daemon exits 2 so that
//! systemd restarts it) when children fail more than the budget allows within a window.
//!
//! ractor has no restart strategy of its own: its default would stop the supervisor with its first
//! failed child. This is the one-for-one strategy, written out.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

use super::channel::{ChannelActor, ChannelArgs};
use super::conversation::{ConversationActor, ConversationArgs};
use super::receiver::{ReceiverActor, ReceiverArgs, receiver_actor_name};
use super::{CONVERSATION_ACTOR, SupervisorMsg, channel_actor_name};
use crate::config::SupervisorConfig;
use crate::model::Platform;

/// A supervised child, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Conversation,
    Channel(Platform),
    /// An outgoing webhook receiver's worker, by its place in `[[webhooks]]`.
    Receiver(usize),
}

impl Child {
    /// The name the child is registered under (`receivers`: the workers' arguments, in order).
    pub fn registered_name(self, receivers: &[ReceiverArgs]) -> String {
        match self {
            Child::Conversation => CONVERSATION_ACTOR.to_owned(),
            Child::Channel(p) => channel_actor_name(p),
            Child::Receiver(i) => receivers.get(i).map_or_else(String::new, |r| receiver_actor_name(&r.receiver.name)),
        }
    }
}

impl std::fmt::Display for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Child::Conversation => f.write_str("conversation"),
            Child::Channel(p) => write!(f, "channel.{p}"),
            Child::Receiver(i) => write!(f, "webhook.{i}"),
        }
    }
}

/// Counts restarts within a sliding window. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max_restarts: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// At most `max_restarts` within any `window`.
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        RestartBudget { max_restarts: max_restarts as usize, window, recent: VecDeque::new() }
    }

    /// Records a restart at `now`. `Err` with the count when the budget is spent.
    pub fn record(&mut self, now: Instant) -> Result<usize, usize> {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > self.max_restarts { Err(self.recent.len()) } else { Ok(self.recent.len()) }
    }
}

/// The delay before the `attempt`-th consecutive restart of one child (1-based): doubling from
/// `initial`, capped at `max`.
pub fn restart_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(max)
}

/// What the supervisor is started with.
pub struct SupervisorArgs {
    pub conversation: ConversationArgs,
    pub channels: Vec<ChannelArgs>,
    /// One delivery worker per `[[webhooks]]` receiver, started after the channels.
    pub receivers: Vec<ReceiverArgs>,
    pub limits: SupervisorConfig,
    /// Told why when the restart budget is spent; the daemon then exits 2.
    pub fatal: mpsc::UnboundedSender<String>,
}

/// The supervisor behaviour.
pub struct Supervisor;

/// Mutable state of the supervisor.
pub struct SupervisorState {
    conversation: ConversationArgs,
    channels: HashMap<Platform, ChannelArgs>,
    receivers: Vec<ReceiverArgs>,
    limits: SupervisorConfig,
    fatal: mpsc::UnboundedSender<String>,
    running: HashMap<ActorId, Child>,
    budget: RestartBudget,
    /// Consecutive failures per child, for the back-off; reset when a restart window passes quietly.
    failures: HashMap<Child, (u32, Instant)>,
    shutting_down: bool,
}

impl Supervisor {
    async fn spawn_child(
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        child: Child,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match child {
            Child::Conversation => {
                let (actor, _) = Actor::spawn_linked(
                    Some(child.registered_name(&state.receivers)),
                    ConversationActor,
                    state.conversation.clone(),
                    myself.get_cell(),
                )
                .await?;
                actor.get_cell()
            }
            Child::Channel(platform) => {
                let args = state.channels.get(&platform).cloned().ok_or("no arguments for a channel")?;
                let (actor, _) =
                    Actor::spawn_linked(Some(channel_actor_name(platform)), ChannelActor, args, myself.get_cell())
                        .await?;
                actor.get_cell()
            }
            Child::Receiver(i) => {
                let args = state.receivers.get(i).cloned().ok_or("no arguments for a receiver")?;
                let name = child.registered_name(&state.receivers);
                let (actor, _) = Actor::spawn_linked(Some(name), ReceiverActor, args, myself.get_cell()).await?;
                actor.get_cell()
            }
        };
        state.running.insert(cell.get_id(), child);
        Ok(())
    }

    /// Schedules a restart of `child`, or reports that the budget is spent.
    fn child_down(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, child: Child, why: &str) {
        let now = Instant::now();
        let window = Duration::from_secs(state.limits.restart_window_secs);
        if let Err(count) = state.budget.record(now) {
            let reason = format!(
                "{count} actor restarts within {}s (limit {}); last: {child} ({why})",
                window.as_secs(),
                state.limits.max_restarts
            );
            tracing::error!(message = "Restart budget spent; the daemon will exit.", %reason);
            let _ = state.fatal.send(reason);
            return;
        }
        let entry = state.failures.entry(child).or_insert((0, now));
        if now.duration_since(entry.1) > window {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
        let delay = restart_delay(
            Duration::from_millis(state.limits.restart_backoff_ms),
            Duration::from_millis(state.limits.max_restart_backoff_ms),
            entry.0,
        );
        tracing::warn!(message = "Actor failed; restarting after a delay.", actor = %child, reason = %why, delay_ms = delay.as_millis() as u64);
        myself.send_after(delay, move || SupervisorMsg::Respawn(child));
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let budget = RestartBudget::new(args.limits.max_restarts, Duration::from_secs(args.limits.restart_window_secs));
        let mut state = SupervisorState {
            conversation: args.conversation,
            channels: args.channels.into_iter().map(|c| (c.platform, c)).collect(),
            receivers: args.receivers,
            limits: args.limits,
            fatal: args.fatal,
            running: HashMap::new(),
            budget,
            failures: HashMap::new(),
            shutting_down: false,
        };
        Supervisor::spawn_child(&myself, &mut state, Child::Conversation).await?;
        let mut platforms: Vec<Platform> = state.channels.keys().copied().collect();
        platforms.sort();
        for platform in platforms {
            Supervisor::spawn_child(&myself, &mut state, Child::Channel(platform)).await?;
        }
        for i in 0..state.receivers.len() {
            Supervisor::spawn_child(&myself, &mut state, Child::Receiver(i)).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Respawn(child) => {
                if state.shutting_down {
                    return Ok(());
                }
                if let Err(e) = Supervisor::spawn_child(&myself, state, child).await {
                    Supervisor::child_down(&myself, state, child, &format!("restart failed: {e}"));
                } else {
                    crate::metrics::metrics().actor_restarted(&child.to_string());
                    tracing::info!(message = "Actor restarted.", actor = %child);
                }
            }
            SupervisorMsg::ShutDown { reply } => {
                state.shutting_down = true;
                let grace = Some(Duration::from_secs(10));
                // Channels first: what they already hold reaches the store. Then the store, whose
                // post_stop makes everything durable and answers every waiting webhook.
                let mut children: Vec<(ActorId, Child)> = state.running.iter().map(|(id, c)| (*id, *c)).collect();
                children.sort_by_key(|(_, c)| matches!(c, Child::Conversation));
                for (id, child) in children {
                    let Some(cell) = ractor::registry::where_is(child.registered_name(&state.receivers))
                        .filter(|c| c.get_id() == id)
                    else {
                        continue;
                    };
                    if let Err(e) = cell.drain_and_wait(grace).await {
                        tracing::warn!(message = "Actor did not drain in time; stopping it.", actor = %child, error = %e);
                        let _ = cell.stop_and_wait(None, grace).await;
                    }
                }
                let _ = reply.send(());
            }
            SupervisorMsg::Reconfigure { channels } => {
                for args in channels {
                    let platform = args.platform;
                    // A channel restarted later starts with these, not with what it began with.
                    let send = Box::new(args.send.clone());
                    state.channels.insert(platform, args);
                    if let Some(channel) = super::channel_actor(platform)
                        && let Err(e) = channel.cast(super::ChannelMsg::Reconfigure(send))
                    {
                        tracing::warn!(message = "A channel missed its new settings; it gets them when it restarts.", %platform, error = %e);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(child) = state.running.remove(&cell.get_id())
                    && !state.shutting_down
                {
                    Supervisor::child_down(&myself, state, child, &error.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(child) = state.running.remove(&cell.get_id())
                    && !state.shutting_down
                {
                    let why = reason.unwrap_or_else(|| "stopped unexpectedly".into());
                    Supervisor::child_down(&myself, state, child, &why);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

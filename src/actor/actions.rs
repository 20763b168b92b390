//! The channel's queue of engagement actions (read receipts, typing, reactions): which request
//! goes next, and what an answer means (pure: `now` and the back-off are passed in; the reply
//! is any value the caller wants back when the action ends).
//!
//! Actions are not stored: a typing indicator or a read receipt that arrives minutes late is
//! wrong, so each has a short deadline (`ACTION_DEADLINE`) and the caller learns how it ended.
//! They go one at a time, oldest first, ahead of queued messages (they are small and
//! time-sensitive) but through the same pacer, so they count against the platform's rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::model::{MessageError, OutboundAction};
use crate::platform::ActionOutcome;

/// How long an action may wait and retry before it is given up.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(20);
/// Actions waiting at most; more are refused at once.
pub const MAX_QUEUED_ACTIONS: usize = 1_000;

/// One action and where it is.
struct Queued<R> {
    id: u64,
    action: OutboundAction,
    /// How many requests it takes, and how many went through.
    steps: usize,
    step: usize,
    attempts: u32,
    not_before: Instant,
    deadline: Instant,
    reply: R,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// Send request `step` of `action` now (after taking a slot from the pacer).
    Send { id: u64, action: &'a OutboundAction, step: usize },
    /// Nothing may go before this time.
    WaitUntil(Instant),
    /// Nothing queued, or the one in flight has not answered.
    Idle,
}

/// The queue.
pub struct ActionQueue<R> {
    queue: VecDeque<Queued<R>>,
    in_flight: Option<u64>,
    next_id: u64,
}

impl<R> Default for ActionQueue<R> {
    fn default() -> Self {
        ActionQueue { queue: VecDeque::new(), in_flight: None, next_id: 1 }
    }
}

impl<R> ActionQueue<R> {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues `action`, which takes `steps` requests; gives the reply back when the queue is full.
    pub fn push(&mut self, action: OutboundAction, steps: usize, reply: R, now: Instant) -> Result<(), R> {
        if self.queue.len() >= MAX_QUEUED_ACTIONS {
            return Err(reply);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(Queued {
            id,
            action,
            steps: steps.max(1),
            step: 0,
            attempts: 0,
            not_before: now,
            deadline: now + ACTION_DEADLINE,
            reply,
        });
        Ok(())
    }

    /// Removes the actions whose deadline passed while they waited (not the one in flight).
    pub fn expire(&mut self, now: Instant) -> Vec<(R, MessageError)> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for queued in self.queue.drain(..) {
            if Some(queued.id) != self.in_flight && queued.deadline <= now {
                let error = MessageError {
                    code: "deadline".into(),
                    message: format!(
                        "`{}` could not be sent within {} s; it is given up",
                        queued.action.kind.name(),
                        ACTION_DEADLINE.as_secs()
                    ),
                    permanent: false,
                };
                expired.push((queued.reply, error));
            } else {
                kept.push_back(queued);
            }
        }
        self.queue = kept;
        expired
    }

    /// Ends every queued action with `error` (the channel cannot send).
    pub fn drain(&mut self, error: &MessageError) -> Vec<(R, MessageError)> {
        self.in_flight = None;
        self.queue.drain(..).map(|q| (q.reply, error.clone())).collect()
    }

    /// What may go now.
    pub fn next(&self, now: Instant) -> Next<'_> {
        if self.in_flight.is_some() {
            return Next::Idle;
        }
        match self.queue.front() {
            None => Next::Idle,
            Some(head) if head.not_before > now => Next::WaitUntil(head.not_before),
            Some(head) => Next::Send { id: head.id, action: &head.action, step: head.step },
        }
    }

    /// The request of `id` left.
    pub fn started(&mut self, id: u64) {
        if self.queue.front().is_some_and(|q| q.id == id) {
            self.in_flight = Some(id);
        }
    }

    /// The request of `id` ended with `outcome`; `backoff(attempts)` is the wait before a retry
    /// the platform gave no time for. Returns the reply and result once the action is over.
    pub fn answered(
        &mut self,
        id: u64,
        outcome: ActionOutcome,
        now: Instant,
        backoff: impl FnOnce(u32) -> Duration,
    ) -> Option<(R, Result<(), MessageError>)> {
        if self.in_flight != Some(id) {
            return None;
        }
        self.in_flight = None;
        let head = self.queue.front_mut().filter(|q| q.id == id)?;
        let result = match outcome {
            ActionOutcome::Done => {
                head.step += 1;
                head.attempts = 0;
                if head.step < head.steps {
                    return None;
                }
                Ok(())
            }
            ActionOutcome::Retry { after, error } => {
                head.attempts += 1;
                let delay = after.unwrap_or_else(|| backoff(head.attempts));
                match now.checked_add(delay) {
                    Some(at) if at < head.deadline => {
                        head.not_before = at;
                        return None;
                    }
                    _ => Err(error),
                }
            }
            ActionOutcome::Failed(error) | ActionOutcome::TokenRejected(error) => Err(error),
        };
        self.queue.pop_front().map(|q| (q.reply, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionKind;

    fn action(kind: ActionKind) -> OutboundAction {
        OutboundAction { recipient: "7212345678901234".into(), kind }
    }

    fn error(code: &str) -> MessageError {
        MessageError { code: code.into(), message: format!("error {code}"), permanent: false }
    }

    const NO_WAIT: fn(u32) -> Duration = |_| Duration::from_millis(100);

    #[test]
    fn actions_go_one_at_a_time_in_order_and_every_step_of_one_goes_before_it_ends() {
        let t0 = Instant::now();
        let mut queue = ActionQueue::default();
        let read = action(ActionKind::MarkRead { message_id: None, typing: true });
        let react = action(ActionKind::React { message_id: "m_1".into(), emoji: "👍".into() });
        queue.push(read.clone(), 2, "read", t0).unwrap();
        queue.push(react.clone(), 1, "react", t0).unwrap();
        assert_eq!(queue.next(t0), Next::Send { id: 1, action: &read, step: 0 });
        queue.started(1);
        assert_eq!(queue.next(t0), Next::Idle, "one in flight at a time");
        assert_eq!(queue.answered(1, ActionOutcome::Done, t0, NO_WAIT), None, "a second request to go");
        assert_eq!(queue.next(t0), Next::Send { id: 1, action: &read, step: 1 });
        queue.started(1);
        assert_eq!(queue.answered(1, ActionOutcome::Done, t0, NO_WAIT), Some(("read", Ok(()))));
        assert_eq!(queue.next(t0), Next::Send { id: 2, action: &react, step: 0 });
        queue.started(2);
        let refused = ActionOutcome::Failed(error("100"));
        assert_eq!(queue.answered(2, refused, t0, NO_WAIT), Some(("react", Err(error("100")))));
        assert!(queue.is_empty());
        assert_eq!(queue.next(t0), Next::Idle);
    }

    #[test]
    fn a_temporary_failure_waits_and_retries_until_the_deadline() {
        let t0 = Instant::now();
        let mut queue = ActionQueue::default();
        let typing = action(ActionKind::Typing { on: true, message_id: None });
        queue.push(typing.clone(), 1, (), t0).unwrap();
        queue.started(1);
        let busy = ActionOutcome::Retry { after: Some(Duration::from_secs(3)), error: error("613") };
        assert_eq!(queue.answered(1, busy, t0, NO_WAIT), None);
        assert_eq!(queue.next(t0), Next::WaitUntil(t0 + Duration::from_secs(3)));
        let later = t0 + Duration::from_secs(3);
        assert_eq!(queue.next(later), Next::Send { id: 1, action: &typing, step: 0 });
        queue.started(1);
        // Without a time from the platform, the back-off decides; past the deadline, it ends.
        let again = ActionOutcome::Retry { after: None, error: error("2") };
        assert_eq!(
            queue.answered(1, again, later, |attempts| Duration::from_secs(30 * u64::from(attempts))),
            Some(((), Err(error("2"))))
        );
    }

    #[test]
    fn waiting_actions_expire_at_their_deadline_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut queue = ActionQueue::default();
        for i in 0..MAX_QUEUED_ACTIONS {
            queue.push(action(ActionKind::Typing { on: false, message_id: None }), 1, i, t0).unwrap();
        }
        assert_eq!(queue.push(action(ActionKind::Typing { on: false, message_id: None }), 1, 9_999, t0), Err(9_999));
        queue.started(1);
        assert!(queue.expire(t0 + ACTION_DEADLINE - Duration::from_millis(1)).is_empty());
        let expired = queue.expire(t0 + ACTION_DEADLINE);
        assert_eq!(expired.len(), MAX_QUEUED_ACTIONS - 1, "all but the one in flight");
        assert!(expired.iter().all(|(_, e)| e.code == "deadline"));
        assert_eq!(queue.len(), 1);
        // An answer for an action that is not in flight changes nothing.
        assert_eq!(queue.answered(77, ActionOutcome::Done, t0, NO_WAIT), None);
        assert_eq!(queue.answered(1, ActionOutcome::Done, t0, NO_WAIT), Some((0, Ok(()))));
        assert_eq!(queue.drain(&error("x")).len(), 0);
    }
}

//! Rate arithmetic for outbound sends, pure: every function takes the current `Instant`, so tests
//! control time and the channel actor decides when to wake.
//!
//! [`TokenBucket`] is the generic cell rate algorithm (GCRA): it keeps one "theoretical arrival
//! time" instead of a token count, which makes "when may the next send go?" a subtraction. With a
//! burst of 1 it paces sends evenly, so no window of one period ever holds more than the rate.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per `period`, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: Duration,
    /// When the bucket will next be full enough for one token (GCRA's TAT).
    next_free: Option<Instant>,
}

impl TokenBucket {
    /// `rate` sends per `period` (rate > 0), at most `burst` (≥ 1) back to back.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Self {
        let interval = period / rate.max(1);
        TokenBucket { interval, tolerance: interval * burst.max(1).saturating_sub(1), next_free: None }
    }

    /// The time one token takes to refill.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When a token will be available: `now` or later.
    pub fn ready_at(&self, now: Instant) -> Instant {
        match self.next_free {
            Some(tat) => tat.checked_sub(self.tolerance).map_or(now, |t| t.max(now)),
            None => now,
        }
    }

    /// Takes a token if one is available at `now`; `Err(when)` says when to try again.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let ready = self.ready_at(now);
        if ready > now {
            return Err(ready);
        }
        let tat = self.next_free.map_or(now, |t| t.max(now));
        self.next_free = Some(tat + self.interval);
        Ok(())
    }

    /// Blocks the bucket until `until` (a platform said to back off).
    pub fn pause_until(&mut self, until: Instant) {
        let tat = until + self.tolerance;
        if self.next_free.is_none_or(|t| t < tat) {
            self.next_free = Some(tat);
        }
    }
}

/// Paces a channel's requests under a platform ceiling of `rate` per `period`, as measured where
/// they arrive.
///
/// Two rules together. A token bucket spaces sends evenly just under the rate and lets a send that
/// went somewhat late keep the schedule. And a log of the last `rate` send times holds a send back
/// until the one `rate` sends earlier is more than `period + arrival_guard(period)` old, so no
/// window of one period holds more than `rate` sends even when they reach the platform up to
/// [`arrival_guard`] (less a 0.1% lateness credit) later or earlier than they left: scheduling on
/// a busy host, the network, the platform's own front end. That is 50 ms for a per-second limit
/// and 720 ms for a per-minute one. The achieved rate is [`pacing_share`] of the ceiling (95.2%
/// of a per-second limit, 98.8% of a per-minute one).
#[derive(Debug, Clone)]
pub struct Pacer {
    bucket: TokenBucket,
    rate: usize,
    window: Duration,
    /// How much timer lateness a send held back by the window is forgiven (see `try_take`).
    lateness_credit: Duration,
    recent: VecDeque<Instant>,
    /// The latest pause asked for, kept across [`Pacer::retune`].
    paused_until: Option<Instant>,
}

/// The least arrival jitter every ceiling tolerates (see [`Pacer`]). Two replies that left the
/// daemon 25 ms apart were seen to reach a platform stand-in in the same millisecond on a busy
/// two-core host; 50 ms is twice that.
pub const MIN_ARRIVAL_GUARD: Duration = Duration::from_millis(50);
/// The arrival jitter tolerated as a share of the period, where that is more than the minimum.
pub const ARRIVAL_GUARD_SHARE: f64 = 0.012;
/// The even spacing aims just above what the window rule allows, so that the window rule, which
/// does not lose time to late wake-ups, sets the pace.
const SPACING_MARGIN: f64 = 0.993;

/// How much later (or earlier) than it left a request may reach the platform without breaking a
/// ceiling of one `period`: the larger of [`MIN_ARRIVAL_GUARD`] and [`ARRIVAL_GUARD_SHARE`] of it.
pub fn arrival_guard(period: Duration) -> Duration {
    period.mul_f64(ARRIVAL_GUARD_SHARE).max(MIN_ARRIVAL_GUARD)
}

/// The share of a ceiling of one `period` that a [`Pacer`] achieves: `period / (period + guard)`.
pub fn pacing_share(period: Duration) -> f64 {
    period.as_secs_f64() / (period + arrival_guard(period)).as_secs_f64()
}

impl Pacer {
    /// A pacer for at most `rate` (≥ 1) requests per `period`.
    pub fn new(rate: u32, period: Duration) -> Self {
        let rate = rate.max(1);
        let window = period + arrival_guard(period);
        // Evenly spaced just above the window rule's pace. The window rule is the ceiling, so the
        // spacing may forgive lateness generously: a whole interval, and at least 1% of the
        // period (at high rates timers are late by whole intervals).
        let interval = window.div_f64(f64::from(rate)).mul_f64(SPACING_MARGIN);
        let bucket = TokenBucket { interval, tolerance: interval.max(period / 100), next_free: None };
        Pacer {
            bucket,
            rate: rate as usize,
            window,
            lateness_credit: period / 1000,
            recent: VecDeque::with_capacity(rate as usize),
            paused_until: None,
        }
    }

    /// When the next request may go: `now` or later.
    pub fn ready_at(&self, now: Instant) -> Instant {
        let by_window = match self.recent.front() {
            Some(oldest) if self.recent.len() == self.rate => (*oldest + self.window).max(now),
            _ => now,
        };
        by_window.max(self.bucket.ready_at(now))
    }

    /// Takes a slot if one is free at `now`; `Err(when)` says when to try again.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let ready = self.ready_at(now);
        if ready > now {
            return Err(ready);
        }
        self.bucket.try_take(now)?;
        // A send held back by the window goes when its slot opened, give or take the timer: the
        // log keeps the slot's time (up to `lateness_credit` earlier than now) so that timer
        // lateness does not add up, window after window, into a lower rate.
        let mut sent_at = now;
        if self.recent.len() == self.rate
            && let Some(oldest) = self.recent.pop_front()
        {
            let slot = oldest + self.window;
            sent_at = slot.clamp(now.checked_sub(self.lateness_credit).unwrap_or(now), now);
        }
        self.recent.push_back(sent_at);
        Ok(())
    }

    /// Holds every request back until `until` (the platform said to back off).
    pub fn pause_until(&mut self, until: Instant) {
        self.bucket.pause_until(until);
        self.paused_until = self.paused_until.max(Some(until));
    }

    /// Paces at a new `rate` per `period` from `now` on (a configuration reload). The log of
    /// recent sends is kept, so that no window ending after the change holds more than the new
    /// rate, counting the sends made before it; the even spacing starts afresh at the new rate; a
    /// pause still in force stays in force.
    pub fn retune(&mut self, rate: u32, period: Duration, now: Instant) {
        let mut next = Pacer::new(rate, period);
        let keep = self.recent.len().min(next.rate);
        next.recent.extend(self.recent.iter().skip(self.recent.len() - keep));
        if let Some(until) = self.paused_until.filter(|until| *until > now) {
            next.pause_until(until);
        }
        *self = next;
    }
}

/// One bucket per key (WhatsApp's per-recipient pair limit), forgetting keys whose buckets are full
/// again so the map stays as small as the set of recently active recipients.
#[derive(Debug, Clone)]
pub struct KeyedBuckets<K> {
    template: TokenBucket,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Eq + Hash + Clone> KeyedBuckets<K> {
    /// Every key gets a copy of `template`.
    pub fn new(template: TokenBucket) -> Self {
        KeyedBuckets { template, buckets: HashMap::new() }
    }

    /// When `key` may send next.
    pub fn ready_at(&self, key: &K, now: Instant) -> Instant {
        self.buckets.get(key).map_or(now, |b| b.ready_at(now))
    }

    /// Takes a token for `key`, or says when to try again.
    pub fn try_take(&mut self, key: &K, now: Instant) -> Result<(), Instant> {
        self.buckets.entry(key.clone()).or_insert_with(|| self.template.clone()).try_take(now)
    }

    /// Blocks `key` until `until`.
    pub fn pause_until(&mut self, key: &K, until: Instant) {
        self.buckets.entry(key.clone()).or_insert_with(|| self.template.clone()).pause_until(until);
    }

    /// Every key follows `template`'s rate and burst from now on; what each key already used is kept.
    pub fn retune(&mut self, template: TokenBucket) {
        for bucket in self.buckets.values_mut() {
            bucket.interval = template.interval;
            bucket.tolerance = template.tolerance;
        }
        self.template = template;
    }

    /// Drops buckets that are full again (they behave exactly like a fresh copy).
    pub fn forget_idle(&mut self, now: Instant) {
        // GCRA: a bucket whose theoretical arrival time has passed holds its full burst again.
        self.buckets.retain(|_, b| b.next_free.is_some_and(|tat| tat > now));
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Exponential back-off with full jitter: a delay in `[base·2^(attempt-1) / 2, base·2^(attempt-1)]`,
/// capped at `max`. `jitter` in `[0, 1)` comes from the caller (a random number in production, a
/// fixed one in tests).
pub fn backoff(base: Duration, max: Duration, attempt: u32, jitter: f64) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20))).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    exponential.mul_f64(0.5 + 0.5 * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_paces_sends_evenly() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(40, Duration::from_secs(1), 1);
        assert_eq!(bucket.try_take(t0), Ok(()));
        assert_eq!(bucket.try_take(t0), Err(t0 + Duration::from_millis(25)));
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(24)), Err(t0 + Duration::from_millis(25)));
        assert_eq!(bucket.try_take(t0 + Duration::from_millis(25)), Ok(()));
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_rate() {
        // Simulate a sender that sends whenever it may, as fast as it can, for 10 seconds.
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(40, Duration::from_secs(1), 1);
        let mut sends = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(10) {
            match bucket.try_take(now) {
                Ok(()) => sends.push(now),
                Err(when) => now = when,
            }
        }
        assert_eq!(sends.len(), 400);
        for (i, start) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().take_while(|t| **t < *start + Duration::from_secs(1)).count();
            assert!(in_window <= 40, "{in_window} sends in one second");
        }
    }

    /// Sends whenever the pacer allows, waking `late(n)` after each deadline, for `seconds`.
    fn drive_pacer(rate: u32, seconds: u64, late: impl Fn(u32) -> Duration) -> Vec<Instant> {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(rate, Duration::from_secs(1));
        let (mut sends, mut now, mut wake) = (Vec::new(), t0, 0u32);
        while now < t0 + Duration::from_secs(seconds) {
            match pacer.try_take(now) {
                Ok(()) => sends.push(now),
                Err(when) => {
                    wake += 1;
                    now = when + late(wake);
                }
            }
        }
        sends
    }

    /// The most sends any window of `span` holds.
    fn busiest_window(sends: &[Instant], span: Duration) -> usize {
        (0..sends.len()).map(|i| sends[i..].iter().take_while(|t| **t < sends[i] + span).count()).max().unwrap_or(0)
    }

    #[test]
    fn the_pacer_keeps_within_one_percent_of_its_share_with_room_for_arrival_jitter() {
        let period = Duration::from_secs(1);
        let share = pacing_share(period);
        assert!((0.95..0.96).contains(&share), "a per-second ceiling keeps 50 ms of room: {share}");
        for rate in [1, 7, 40, 80, 200] {
            for late_ms in [0, 1, 2, 10] {
                let sends = drive_pacer(rate, 30, |n| {
                    Duration::from_millis(if n.is_multiple_of(5) { late_ms / 2 } else { late_ms })
                });
                // Sends per second between the first and the last, as a share of the ceiling.
                let span = (sends[sends.len() - 1] - sends[0]).as_secs_f64();
                let achieved = (sends.len() - 1) as f64 / span / f64::from(rate);
                assert!(
                    (share - 0.01..=share + 0.005).contains(&achieved),
                    "rate {rate}, late {late_ms} ms: achieved {achieved:.4} of the ceiling, expected about {share:.4}"
                );
                // Requests that arrive up to the guard (less the lateness credit) apart from when
                // they left still never put more than `rate` in one second.
                let window = period + arrival_guard(period) - Duration::from_millis(1);
                assert!(busiest_window(&sends, window) <= rate as usize, "rate {rate}, late {late_ms} ms");
            }
        }
    }

    #[test]
    fn requests_that_arrive_25_ms_off_from_when_they_left_never_put_41_in_a_second() {
        // Seen on a busy two-core host: two replies that left 25 ms apart arrived in the same
        // millisecond. With each arrival anywhere from 0 to 25 ms after its release, a second of
        // arrivals holds only releases from within 1.025 s: those must be at most 40.
        for late_ms in [0, 3] {
            let sends = drive_pacer(40, 30, |n| Duration::from_millis(if n.is_multiple_of(3) { late_ms } else { 0 }));
            let busiest = busiest_window(&sends, Duration::from_millis(1025));
            assert!(busiest <= 40, "timers {late_ms} ms late: {busiest} releases within 1.025 s");
        }
    }

    #[test]
    fn the_arrival_guard_is_50_ms_or_1_2_percent_of_the_period() {
        assert_eq!(arrival_guard(Duration::from_secs(1)), Duration::from_millis(50));
        assert_eq!(arrival_guard(Duration::from_secs(60)), Duration::from_millis(720));
        assert!((pacing_share(Duration::from_secs(60)) - 1.0 / 1.012).abs() < 1e-9);
    }

    #[test]
    fn after_a_lower_rate_no_window_ending_after_the_change_holds_more_than_the_new_rate() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut pacer = Pacer::new(40, second);
        let (mut sends, mut now) = (Vec::new(), t0);
        let switch = t0 + Duration::from_secs(3);
        let mut retuned = false;
        while now < t0 + Duration::from_secs(6) {
            if !retuned && now >= switch {
                pacer.retune(10, second, now);
                retuned = true;
            }
            match pacer.try_take(now) {
                Ok(()) => sends.push(now),
                Err(when) => now = when,
            }
        }
        for (i, send) in sends.iter().enumerate().filter(|(_, t)| **t >= switch) {
            let in_window = sends[..=i].iter().filter(|t| **t + second > *send).count();
            assert!(in_window <= 10, "{in_window} sends in the second up to {:?}", *send - t0);
        }
        let after = sends.iter().filter(|t| **t >= switch + second).count();
        assert!((19..=20).contains(&after), "{after} sends in the last two seconds at 10/s");
    }

    #[test]
    fn a_higher_rate_takes_effect_for_the_next_sends() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(1, Duration::from_secs(1));
        assert_eq!(pacer.try_take(t0), Ok(()));
        assert!(pacer.try_take(t0 + Duration::from_millis(100)).is_err());
        pacer.retune(10, Duration::from_secs(1), t0 + Duration::from_millis(101));
        assert_eq!(pacer.try_take(t0 + Duration::from_millis(101)), Ok(()));
    }

    #[test]
    fn a_pause_survives_a_new_rate() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(10, Duration::from_secs(1));
        pacer.pause_until(t0 + Duration::from_secs(2));
        pacer.retune(20, Duration::from_secs(1), t0 + Duration::from_secs(1));
        assert_eq!(pacer.try_take(t0 + Duration::from_secs(1)), Err(t0 + Duration::from_secs(2)));
        let mut expired = Pacer::new(10, Duration::from_secs(1));
        expired.pause_until(t0 + Duration::from_secs(2));
        expired.retune(20, Duration::from_secs(1), t0 + Duration::from_secs(3));
        assert_eq!(expired.try_take(t0 + Duration::from_secs(3)), Ok(()), "a pause that ended is forgotten");
    }

    #[test]
    fn retuned_keyed_buckets_keep_what_each_key_used() {
        let t0 = Instant::now();
        let mut buckets = KeyedBuckets::new(TokenBucket::new(1, Duration::from_secs(6), 1));
        assert_eq!(buckets.try_take(&"ana", t0), Ok(()));
        buckets.retune(TokenBucket::new(1, Duration::from_secs(6), 2));
        assert_eq!(buckets.try_take(&"ana", t0), Ok(()), "the larger burst applies to a known key");
        assert!(buckets.try_take(&"ana", t0).is_err(), "but what it used still counts");
        assert_eq!(buckets.try_take(&"rui", t0), Ok(()));
        assert_eq!(buckets.try_take(&"rui", t0), Ok(()), "a new key gets the new burst");
    }

    #[test]
    fn the_pacer_holds_back_after_a_pause() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(10, Duration::from_secs(1));
        pacer.pause_until(t0 + Duration::from_secs(2));
        assert_eq!(pacer.try_take(t0), Err(t0 + Duration::from_secs(2)));
        assert_eq!(pacer.try_take(t0 + Duration::from_secs(2)), Ok(()));
        assert!(pacer.try_take(t0 + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn a_burst_allows_back_to_back_sends_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, Duration::from_secs(6), 3);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        assert_eq!(bucket.try_take(t0), Err(t0 + Duration::from_secs(6)));
        assert_eq!(bucket.try_take(t0 + Duration::from_secs(6)), Ok(()));
        assert!(bucket.try_take(t0 + Duration::from_secs(6)).is_err());
        // Idle long enough, the full burst is back.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(later), Ok(()));
        }
    }

    #[test]
    fn a_pause_delays_the_next_token() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, Duration::from_secs(1), 5);
        bucket.pause_until(t0 + Duration::from_secs(2));
        assert_eq!(bucket.try_take(t0), Err(t0 + Duration::from_secs(2)));
        assert_eq!(bucket.try_take(t0 + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn keyed_buckets_are_independent_and_forget_idle_keys() {
        let t0 = Instant::now();
        let mut buckets = KeyedBuckets::new(TokenBucket::new(1, Duration::from_secs(6), 1));
        assert_eq!(buckets.try_take(&"ana", t0), Ok(()));
        assert!(buckets.try_take(&"ana", t0).is_err());
        assert_eq!(buckets.try_take(&"rui", t0), Ok(()));
        assert_eq!(buckets.len(), 2);
        buckets.forget_idle(t0 + Duration::from_secs(1));
        assert_eq!(buckets.len(), 2, "still limited");
        buckets.forget_idle(t0 + Duration::from_secs(6));
        assert!(buckets.is_empty());
        assert_eq!(buckets.ready_at(&"ana", t0 + Duration::from_secs(6)), t0 + Duration::from_secs(6));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let (base, max) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff(base, max, 1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(base, max, 1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(base, max, 3, 1.0), Duration::from_millis(2000));
        assert_eq!(backoff(base, max, 30, 1.0), max);
        assert_eq!(backoff(base, max, 30, 0.0), max / 2);
    }
}

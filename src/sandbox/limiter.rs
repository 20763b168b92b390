//! The sandbox's rate limits: a sliding window over the sends it accepted, as the platforms count
//! them. Time is passed in, so the arithmetic is tested without a clock.

use std::collections::VecDeque;

/// At most `limit` accepted sends in any window of `window_ms` milliseconds.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    limit: usize,
    window_ms: u64,
    /// Monotonic milliseconds of the sends accepted within the last window, oldest first. Never
    /// longer than `limit`: a send is only recorded after the check let it through.
    accepted: VecDeque<u64>,
}

impl SlidingWindow {
    /// A window of `window_ms` allowing `limit` sends (a limit of 0 is treated as 1: a configured
    /// platform can always send something).
    pub fn new(limit: u32, window_ms: u64) -> Self {
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        SlidingWindow { limit, window_ms, accepted: VecDeque::new() }
    }

    /// Per second, for Graph's per-second limits.
    pub fn per_second(limit: u32) -> Self {
        Self::new(limit, 1000)
    }

    /// Per minute, for Viber's and LinkedIn's configured ceilings.
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, 60_000)
    }

    /// Records a send at `now_ms` if the window has room; otherwise returns how many milliseconds
    /// until the oldest send leaves the window (at least 1).
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), u64> {
        while let Some(&oldest) = self.accepted.front() {
            if now_ms.saturating_sub(oldest) >= self.window_ms {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        if self.accepted.len() >= self.limit {
            let oldest = self.accepted.front().copied().unwrap_or(now_ms);
            return Err((oldest + self.window_ms).saturating_sub(now_ms).max(1));
        }
        self.accepted.push_back(now_ms);
        Ok(())
    }

    /// Forgets every recorded send (`POST /_sandbox/reset`).
    pub fn clear(&mut self) {
        self.accepted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_within_a_window_then_refuses() {
        let mut window = SlidingWindow::per_second(3);
        assert_eq!(window.try_acquire(0), Ok(()));
        assert_eq!(window.try_acquire(100), Ok(()));
        assert_eq!(window.try_acquire(200), Ok(()));
        assert_eq!(window.try_acquire(300), Err(700));
        assert_eq!(window.try_acquire(999), Err(1));
    }

    #[test]
    fn the_window_slides_rather_than_resetting() {
        let mut window = SlidingWindow::per_second(2);
        window.try_acquire(0).unwrap();
        window.try_acquire(900).unwrap();
        // At 1000 the first send has left the window, the second has not.
        assert_eq!(window.try_acquire(1000), Ok(()));
        assert_eq!(window.try_acquire(1500), Err(400));
        assert_eq!(window.try_acquire(1900), Ok(()));
    }

    #[test]
    fn refused_sends_do_not_count() {
        let mut window = SlidingWindow::per_minute(1);
        window.try_acquire(0).unwrap();
        for t in (1..60_000).step_by(5_000) {
            assert!(window.try_acquire(t).is_err());
        }
        assert_eq!(window.try_acquire(60_000), Ok(()));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut window = SlidingWindow::per_second(1);
        window.try_acquire(10).unwrap();
        window.clear();
        assert_eq!(window.try_acquire(11), Ok(()));
    }
}

//! Shared unit-test fakes (the `testing` feature, a dev-dependency only): a clock that stands still and
//! a counter for ids. Domain tests may add in-memory stores of their own; nothing here does I/O.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};

use crate::ports::{Clock, Randomness};

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct FixedClock {
    millis: AtomicI64,
}

impl FixedClock {
    /// A clock stopped at `at` (millisecond precision).
    pub fn at(at: DateTime<Utc>) -> Self {
        FixedClock {
            millis: AtomicI64::new(at.timestamp_millis()),
        }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis.store(at.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Default for FixedClock {
    /// 2025-11-24 16:00:00 UTC (Unix time 1 764 000 000).
    fn default() -> Self {
        FixedClock {
            millis: AtomicI64::new(1_764_000_000_000),
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// Deterministic "random" bits: 1, 2, 3, ... (so ids sort in the order they were made).
#[derive(Debug)]
pub struct Counter {
    next: AtomicU64,
}

impl Counter {
    /// A counter whose first value is 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A counter whose first value is `first`.
    pub fn starting_at(first: u64) -> Self {
        Counter {
            next: AtomicU64::new(first),
        }
    }

    /// The value the next call returns.
    pub fn peek(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

impl Randomness for Counter {
    fn random_u128(&self) -> u128 {
        u128::from(self.next.fetch_add(1, Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_clock_moves_only_when_told() {
        let clock = FixedClock::default();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::milliseconds(1500));
        assert_eq!(clock.now() - start, Duration::milliseconds(1500));
    }

    #[test]
    fn the_counter_counts_from_its_first_value() {
        let counter = Counter::new();
        assert_eq!(counter.random_u128(), 1);
        assert_eq!(counter.random_u128(), 2);
        assert_eq!(Counter::starting_at(7).random_u128(), 7);
    }
}

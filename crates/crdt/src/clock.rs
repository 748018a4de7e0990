//! The wall clock of LWW registers, injectable so that tests are deterministic.

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock the `DEFAULT` and `REVERSE` register clocks read, in milliseconds since the
/// Unix epoch. Nothing else in the crate reads the time.
pub trait Clock {
    /// The current time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Milliseconds since the epoch; 0 for a clock set before 1970, `i64::MAX` far beyond.
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// Any `Fn() -> i64` is a clock: `&|| 1_000` is a clock stopped at 1 second after the epoch.
impl<F: Fn() -> i64> Clock for F {
    fn now_millis(&self) -> i64 {
        self()
    }
}

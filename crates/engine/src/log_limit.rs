//! Rate limits for warning and error log lines, so that a storm of failures (a user function
//! that crashes under load, a full disk) cannot flood the log.
//!
//! Each kind of line has its own [`LogLimit`], a `static` at its call site: at most
//! [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the first line let through after lines were held
//! back says how many (`suppressed`), so nothing goes unnoticed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The length of a window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Lines of one kind let through per window.
pub(crate) const LINES_PER_WINDOW: u64 = 20;

/// The limit of one kind of log line.
pub(crate) struct LogLimit {
    /// The window lines are counted in, as its number since the process's first window.
    window: AtomicU64,
    /// Lines let through in that window.
    lines: AtomicU64,
    /// Lines held back since the last one let through.
    suppressed: AtomicU64,
}

impl LogLimit {
    /// A limit with nothing counted yet.
    pub const fn new() -> Self {
        LogLimit {
            window: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be logged now; if so, how many lines were held back before it.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(window_now())
    }

    fn allow_at(&self, window: u64) -> Option<u64> {
        let current = self.window.load(Ordering::Relaxed);
        if window != current
            && self
                .window
                .compare_exchange(current, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.lines.store(0, Ordering::Relaxed);
        }
        if self.lines.fetch_add(1, Ordering::Relaxed) < LINES_PER_WINDOW {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The number of the current window (counted from the first call).
fn window_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    (start.elapsed().as_secs() / WINDOW.as_secs()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_then_counts_what_it_holds_back() {
        let limit = LogLimit::new();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limit.allow_at(1), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(limit.allow_at(1), None);
        }
        assert_eq!(limit.allow_at(2), Some(5), "the next window says how many");
        assert_eq!(limit.allow_at(2), Some(0));
    }
}

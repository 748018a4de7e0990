//! Load samples: what each node measures and sends to the decision-maker.

use serde::{Deserialize, Serialize};

/// One node's load over one report period. Concurrencies are time-weighted averages over the
/// period (the sum of the time each call was in progress, divided by the period), so a short
/// burst counts for what it lasted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The node that measured it.
    pub node: String,
    /// End of the period, milliseconds since the UNIX epoch.
    pub at_ms: u64,
    /// Length of the period in milliseconds.
    pub interval_ms: u64,
    /// Client calls in progress on this node (including those waiting for the store or for
    /// another node).
    pub request_concurrency: f64,
    /// Client calls that arrived during the period.
    pub requests: u64,
    /// Calls into the user function in progress.
    pub user_function_concurrency: f64,
    /// Store operations in progress.
    pub database_concurrency: f64,
}

impl Sample {
    /// The sample in its compact wire form (JSON), as it travels with membership data.
    pub fn encode(&self) -> String {
        // A struct of numbers and a string always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a sample sent by [`Sample::encode`]; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Sample> {
        serde_json::from_str(text).ok()
    }
}

/// The cumulative load counters of one node at one moment, as the engine keeps them. The
/// "busy" counters are integrals of a concurrency over time, in nanoseconds, kept with
/// wrapping arithmetic: only differences between two readings mean something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadReading {
    /// When the reading was taken, nanoseconds on the counters' own monotonic clock.
    pub at_ns: u64,
    /// Integral of client calls in progress.
    pub request_busy_ns: u64,
    /// Client calls started so far.
    pub requests: u64,
    /// Integral of user function calls in progress.
    pub user_function_busy_ns: u64,
    /// Integral of store operations in progress.
    pub database_busy_ns: u64,
}

impl LoadReading {
    /// The sample of the period from `earlier` to `self`, ending at `at_ms` on the wall clock;
    /// `None` if no time passed.
    pub fn sample_since(&self, earlier: &LoadReading, node: &str, at_ms: u64) -> Option<Sample> {
        let interval_ns = self.at_ns.checked_sub(earlier.at_ns)?;
        if interval_ns == 0 {
            return None;
        }
        let average = |now: u64, before: u64| now.wrapping_sub(before) as f64 / interval_ns as f64;
        Some(Sample {
            node: node.to_owned(),
            at_ms,
            interval_ms: (interval_ns / 1_000_000).max(1),
            request_concurrency: average(self.request_busy_ns, earlier.request_busy_ns),
            requests: self.requests.wrapping_sub(earlier.requests),
            user_function_concurrency: average(
                self.user_function_busy_ns,
                earlier.user_function_busy_ns,
            ),
            database_concurrency: average(self.database_busy_ns, earlier.database_busy_ns),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_time_weighted_average_between_two_readings() {
        let earlier = LoadReading {
            at_ns: 5_000_000_000,
            request_busy_ns: u64::MAX - 999_999_999, // wraps: one second before zero
            requests: 10,
            user_function_busy_ns: 0,
            database_busy_ns: 7,
        };
        let now = LoadReading {
            at_ns: 7_000_000_000,
            request_busy_ns: 3_000_000_000,
            requests: 30,
            user_function_busy_ns: 1_000_000_000,
            database_busy_ns: 7,
        };
        let sample = now.sample_since(&earlier, "a", 42).unwrap();
        assert_eq!(sample.interval_ms, 2000);
        assert_eq!(sample.request_concurrency, 2.0);
        assert_eq!(sample.requests, 20);
        assert_eq!(sample.user_function_concurrency, 0.5);
        assert_eq!(sample.database_concurrency, 0.0);
        assert_eq!(Sample::decode(&sample.encode()), Some(sample));
        assert_eq!(now.sample_since(&now, "a", 42), None);
        assert_eq!(earlier.sample_since(&now, "a", 42), None);
        assert_eq!(Sample::decode("{\"node\":1}"), None);
    }
}

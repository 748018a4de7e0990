//! The autoscaler's settings, with the original Cloudstate defaults.

use std::time::Duration;

use crate::Error;

/// How the autoscaler decides. The defaults are those of the original Cloudstate proxy, except
/// the node bounds (`min_nodes`, which the original did not have, and `max_nodes`, its
/// `max-members`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Concurrency per node of calls into the user function above which nodes are added.
    pub user_function_target_concurrency: f64,
    /// Concurrency per node of client requests (minus database concurrency) above which nodes
    /// are added. Set high: it matters once there are many nodes and many forwarded requests.
    pub request_target_concurrency: f64,
    /// Window over which concurrency is averaged.
    pub target_concurrency_window: Duration,
    /// After scaling up, how long concurrency is not looked at (new nodes start and warm up).
    pub scale_up_stable_deadline: Duration,
    /// After scaling down, how long concurrency is not looked at.
    pub scale_down_stable_deadline: Duration,
    /// While waiting after a scale-up, a request rate this many times the rate at the time of
    /// the scale-up adds nodes at once.
    pub request_rate_threshold_factor: f64,
    /// Window over which the request rate is measured.
    pub request_rate_window: Duration,
    /// Most nodes one step adds or removes, as a fraction of the current nodes (0 = no bound
    /// of this kind; a step may always change one node).
    pub max_scale_factor: f64,
    /// Most nodes one step adds or removes (0 = no bound of this kind).
    pub max_scale: u32,
    /// Fewest nodes ever asked for.
    pub min_nodes: u32,
    /// Most nodes ever asked for.
    pub max_nodes: u32,
    /// How often a decision is made.
    pub tick_period: Duration,
    /// How often each node takes a load sample.
    pub report_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            user_function_target_concurrency: 1.0,
            request_target_concurrency: 50.0,
            target_concurrency_window: Duration::from_secs(60),
            scale_up_stable_deadline: Duration::from_secs(180),
            scale_down_stable_deadline: Duration::from_secs(30),
            request_rate_threshold_factor: 1.5,
            request_rate_window: Duration::from_secs(6),
            max_scale_factor: 0.0,
            max_scale: 2,
            min_nodes: 1,
            max_nodes: 100,
            tick_period: Duration::from_secs(2),
            report_period: Duration::from_secs(1),
        }
    }
}

impl Settings {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Err(Error::InvalidSettings(reason.to_owned()));
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if !positive(self.user_function_target_concurrency) {
            return invalid("the user function target concurrency must be above zero");
        }
        if !positive(self.request_target_concurrency) {
            return invalid("the request target concurrency must be above zero");
        }
        if !(self.request_rate_threshold_factor.is_finite()
            && self.request_rate_threshold_factor > 1.0)
        {
            return invalid("the request rate threshold factor must be above 1");
        }
        if !(self.max_scale_factor.is_finite() && self.max_scale_factor >= 0.0) {
            return invalid("the max scale factor must be zero (no bound) or above");
        }
        if self.min_nodes == 0 {
            return invalid("the fewest nodes must be at least 1");
        }
        if self.max_nodes < self.min_nodes {
            return invalid("the most nodes must be at least the fewest nodes");
        }
        for (name, value) in [
            ("target concurrency window", self.target_concurrency_window),
            ("request rate window", self.request_rate_window),
            ("tick period", self.tick_period),
            ("report period", self.report_period),
        ] {
            if value.is_zero() {
                return invalid(&format!("the {name} must be longer than zero"));
            }
        }
        if self.request_rate_window > self.target_concurrency_window {
            return invalid(
                "the request rate window must not be longer than the concurrency window",
            );
        }
        Ok(())
    }

    /// Whole milliseconds of a duration (saturating).
    pub(crate) fn millis(duration: Duration) -> u64 {
        u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_settings_are_refused() {
        assert_eq!(Settings::default().validate(), Ok(()));
        type Change = fn(&mut Settings);
        let cases: [(Change, &str); 6] = [
            (
                |s| s.user_function_target_concurrency = 0.0,
                "user function",
            ),
            (
                |s| s.request_target_concurrency = f64::NAN,
                "request target",
            ),
            (|s| s.request_rate_threshold_factor = 1.0, "threshold"),
            (|s| s.min_nodes = 0, "fewest"),
            (|s| s.max_nodes = 0, "most nodes"),
            (
                |s| s.request_rate_window = Duration::from_secs(120),
                "rate window",
            ),
        ];
        for (change, expected) in cases {
            let mut settings = Settings::default();
            change(&mut settings);
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}

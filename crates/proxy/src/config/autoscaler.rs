//! The autoscaler: whether it runs, its targets, waits and bounds, and where decisions go.

use std::fmt;
use std::str::FromStr;

use clap::{ArgAction, Args};
use cloudstate_autoscaler::Settings;

use super::HumanDuration;

/// The autoscaler's settings; defaults are [`Settings::default`]'s (the original Cloudstate's).
#[derive(Debug, Args)]
#[command(next_help_heading = "Autoscaler")]
pub struct AutoscalerOptions {
    /// Whether the autoscaler runs (off by default, as in the original).
    #[arg(long, env = "AUTOSCALER_ENABLED", default_value_t = false, action = ArgAction::Set)]
    pub autoscaler_enabled: bool,

    /// Where decisions go: `log` (only logged) or `statefulservice:<name>` (the scale of that
    /// StatefulService in the pod's namespace, through the Kubernetes API).
    #[arg(long, env = "AUTOSCALER_SCALER", default_value_t = ScalerChoice::Log)]
    pub autoscaler_scaler: ScalerChoice,

    /// Fewest nodes ever asked for.
    #[arg(long, env = "AUTOSCALER_MIN_NODES", default_value_t = Settings::default().min_nodes, value_parser = clap::value_parser!(u32).range(1..))]
    autoscaler_min_nodes: u32,

    /// Most nodes ever asked for.
    #[arg(long, env = "AUTOSCALER_MAX_NODES", default_value_t = Settings::default().max_nodes, value_parser = clap::value_parser!(u32).range(1..))]
    autoscaler_max_nodes: u32,

    /// User function calls in progress per node above which nodes are added.
    #[arg(long, env = "USER_FUNCTION_TARGET_CONCURRENCY", default_value_t = Settings::default().user_function_target_concurrency)]
    autoscaler_user_function_target_concurrency: f64,

    /// Client calls in progress per node, less those waiting for the store, above which nodes
    /// are added.
    #[arg(long, env = "REQUEST_TARGET_CONCURRENCY", default_value_t = Settings::default().request_target_concurrency)]
    autoscaler_request_target_concurrency: f64,

    /// Window over which concurrency is averaged.
    #[arg(long, env = "TARGET_CONCURRENCY_WINDOW", default_value_t = HumanDuration(Settings::default().target_concurrency_window))]
    autoscaler_target_concurrency_window: HumanDuration,

    /// After scaling up, how long concurrency is not looked at.
    #[arg(long, env = "SCALE_UP_STABLE_DEADLINE", default_value_t = HumanDuration(Settings::default().scale_up_stable_deadline))]
    autoscaler_scale_up_stable_deadline: HumanDuration,

    /// After scaling down, how long concurrency is not looked at.
    #[arg(long, env = "SCALE_DOWN_STABLE_DEADLINE", default_value_t = HumanDuration(Settings::default().scale_down_stable_deadline))]
    autoscaler_scale_down_stable_deadline: HumanDuration,

    /// During the wait after a scale-up, a request rate this many times the rate at the
    /// scale-up adds nodes at once.
    #[arg(long, env = "REQUEST_RATE_THRESHOLD_FACTOR", default_value_t = Settings::default().request_rate_threshold_factor)]
    autoscaler_request_rate_threshold_factor: f64,

    /// Window over which the request rate is measured.
    #[arg(long, env = "REQUEST_RATE_WINDOW", default_value_t = HumanDuration(Settings::default().request_rate_window))]
    autoscaler_request_rate_window: HumanDuration,

    /// Most nodes one step adds or removes (0: no bound of this kind).
    #[arg(long, env = "AUTOSCALER_MAX_SCALE", default_value_t = Settings::default().max_scale)]
    autoscaler_max_scale: u32,

    /// Most nodes one step adds or removes, as a fraction of the nodes (0: no bound of this kind).
    #[arg(long, env = "AUTOSCALER_MAX_SCALE_FACTOR", default_value_t = Settings::default().max_scale_factor)]
    autoscaler_max_scale_factor: f64,

    /// How often a decision is made.
    #[arg(long, env = "AUTOSCALER_TICK_PERIOD", default_value_t = HumanDuration(Settings::default().tick_period))]
    autoscaler_tick_period: HumanDuration,

    /// How often each node samples its load.
    #[arg(long, env = "AUTOSCALER_REPORT_PERIOD", default_value_t = HumanDuration(Settings::default().report_period))]
    autoscaler_report_period: HumanDuration,
}

impl AutoscalerOptions {
    /// The autoscaler's settings, checked.
    pub fn settings(&self) -> Result<Settings, cloudstate_autoscaler::Error> {
        let settings = Settings {
            user_function_target_concurrency: self.autoscaler_user_function_target_concurrency,
            request_target_concurrency: self.autoscaler_request_target_concurrency,
            target_concurrency_window: self.autoscaler_target_concurrency_window.into(),
            scale_up_stable_deadline: self.autoscaler_scale_up_stable_deadline.into(),
            scale_down_stable_deadline: self.autoscaler_scale_down_stable_deadline.into(),
            request_rate_threshold_factor: self.autoscaler_request_rate_threshold_factor,
            request_rate_window: self.autoscaler_request_rate_window.into(),
            max_scale_factor: self.autoscaler_max_scale_factor,
            max_scale: self.autoscaler_max_scale,
            min_nodes: self.autoscaler_min_nodes,
            max_nodes: self.autoscaler_max_nodes,
            tick_period: self.autoscaler_tick_period.into(),
            report_period: self.autoscaler_report_period.into(),
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// Where the autoscaler's decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScalerChoice {
    /// Only logged.
    Log,
    /// The scale subresource of this StatefulService, in the pod's namespace.
    StatefulService(String),
}

impl FromStr for ScalerChoice {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.split_once(':') {
            None if value == "log" => Ok(ScalerChoice::Log),
            Some(("statefulservice", name)) if !name.is_empty() => {
                Ok(ScalerChoice::StatefulService(name.to_owned()))
            }
            _ => Err(format!(
                "unknown scaler `{value}`: expected `log` or `statefulservice:<name>`"
            )),
        }
    }
}

impl fmt::Display for ScalerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalerChoice::Log => f.write_str("log"),
            ScalerChoice::StatefulService(name) => write!(f, "statefulservice:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::Config;
    use super::*;

    #[test]
    fn the_autoscaler_is_off_by_default_with_the_original_settings() {
        let config = Config::try_parse_from(["p"]).unwrap();
        assert!(!config.autoscaler.autoscaler_enabled);
        assert_eq!(config.autoscaler.autoscaler_scaler, ScalerChoice::Log);
        assert_eq!(config.autoscaler.settings().unwrap(), Settings::default());
    }

    #[test]
    fn autoscaler_settings_are_read_and_checked() {
        let config = Config::try_parse_from([
            "p",
            "--autoscaler-enabled=true",
            "--autoscaler-scaler=statefulservice:cart",
            "--autoscaler-max-nodes=6",
            "--autoscaler-scale-up-stable-deadline=90s",
        ])
        .unwrap();
        assert!(config.autoscaler.autoscaler_enabled);
        assert_eq!(
            config.autoscaler.autoscaler_scaler,
            ScalerChoice::StatefulService("cart".into())
        );
        let settings = config.autoscaler.settings().unwrap();
        assert_eq!(settings.max_nodes, 6);
        assert_eq!(settings.scale_up_stable_deadline.as_secs(), 90);
        for args in [
            &["p", "--autoscaler-scaler=kubernetes"][..],
            &["p", "--autoscaler-scaler=statefulservice:"][..],
            &["p", "--autoscaler-min-nodes=0"][..],
            &["p", "--autoscaler-enabled=maybe"][..],
        ] {
            assert!(
                Config::try_parse_from(args).is_err(),
                "{args:?} was accepted"
            );
        }
        let config =
            Config::try_parse_from(["p", "--autoscaler-min-nodes=5", "--autoscaler-max-nodes=2"])
                .unwrap();
        let error = config.autoscaler.settings().unwrap_err().to_string();
        assert!(error.contains("most nodes"), "{error}");
    }
}

//! Where the user function is.

use clap::Args;

use super::HumanDuration;

/// The user function's address and how discovery waits for it.
#[derive(Debug, Args)]
#[command(next_help_heading = "User function")]
pub struct UserFunctionOptions {
    /// Host of the user function.
    #[arg(long, env = "USER_FUNCTION_HOST", default_value = "127.0.0.1")]
    pub user_function_host: String,

    /// Port of the user function.
    #[arg(long, env = "USER_FUNCTION_PORT", default_value_t = 8080)]
    pub user_function_port: u16,

    /// Longest wait between two discovery attempts while the user function is not up.
    #[arg(long, env = "DISCOVERY_MAX_BACKOFF", default_value = "5s")]
    pub discovery_max_backoff: HumanDuration,
}

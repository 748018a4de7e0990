//! Command-line flags and environment variables of the proxy.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The Cloudstate proxy: serves a user function's stateful services as gRPC, keeping their
/// state in memory, on disk or in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "cloudstate-proxy", version)]
pub struct Config {
    /// Port serving the user's API (gRPC) and the /live and /ready endpoints.
    #[arg(long, env = "HTTP_PORT", default_value_t = 9000)]
    pub http_port: u16,

    /// Interface to listen on.
    #[arg(long, env = "HTTP_INTERFACE", default_value = "0.0.0.0")]
    pub http_interface: IpAddr,

    /// Host of the user function.
    #[arg(long, env = "USER_FUNCTION_HOST", default_value = "127.0.0.1")]
    pub user_function_host: String,

    /// Port of the user function.
    #[arg(long, env = "USER_FUNCTION_PORT", default_value_t = 8080)]
    pub user_function_port: u16,

    /// Where state is kept: `memory` (lost on exit), `embedded:<directory>` (on disk).
    #[arg(long, env = "CLOUDSTATE_STORE", default_value = "embedded:./cloudstate-data", value_parser = parse_store)]
    pub store: StoreConfig,

    /// Idle time after which an entity is unloaded from memory (unless the user function
    /// declares its own).
    #[arg(long, env = "PASSIVATION_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub passivation_timeout: Duration,

    /// Longest a command may take, from arrival to reply.
    #[arg(long, env = "COMMAND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub command_timeout: Duration,

    /// Commands that may wait for one entity before new ones are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "ENTITY_MAILBOX_CAPACITY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub entity_mailbox_capacity: u32,

    /// Longest chain of forwards and side effects one call may cause.
    #[arg(long, env = "MAX_CHAIN_LENGTH", default_value_t = 32)]
    pub max_chain_length: u32,

    /// Longest wait between two discovery attempts while the user function is not up.
    #[arg(long, env = "DISCOVERY_MAX_BACKOFF", default_value = "5s", value_parser = parse_duration)]
    pub discovery_max_backoff: Duration,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where the proxy keeps state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In process memory.
    Memory,
    /// The embedded on-disk store in this directory.
    Embedded(PathBuf),
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_store(value: &str) -> Result<StoreConfig, String> {
    if value == "memory" {
        Ok(StoreConfig::Memory)
    } else if let Some(dir) = value.strip_prefix("embedded:") {
        if dir.is_empty() {
            return Err("`embedded:` needs a directory, e.g. embedded:./cloudstate-data".into());
        }
        Ok(StoreConfig::Embedded(PathBuf::from(dir)))
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Err(
            "the PostgreSQL store is not part of this build yet; use `memory` or `embedded:<dir>`"
                .into(),
        )
    } else {
        Err(format!(
            "unknown store `{value}`: expected `memory` or `embedded:<directory>`"
        ))
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("`{value}` is not a duration like 500ms, 30s or 2m: {e}"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_conventions() {
        let config = Config::try_parse_from(["cloudstate-proxy"]).unwrap();
        assert_eq!(config.http_port, 9000);
        assert_eq!(config.user_function_port, 8080);
        assert_eq!(
            config.store,
            StoreConfig::Embedded(PathBuf::from("./cloudstate-data"))
        );
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        for args in [
            &["p", "--store", "mysql://x"][..],
            &["p", "--store", "embedded:"][..],
            &["p", "--command-timeout", "soon"][..],
            &["p", "--command-timeout", "0s"][..],
            &["p", "--entity-mailbox-capacity", "0"][..],
            &["p", "--http-port", "99999"][..],
        ] {
            assert!(
                Config::try_parse_from(args).is_err(),
                "{args:?} was accepted"
            );
        }
        let err = Config::try_parse_from(["p", "--store", "mysql://x"]).unwrap_err();
        assert!(err.to_string().contains("unknown store"), "{err}");
    }
}

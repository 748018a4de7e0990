//! The proxy's configuration: command-line flags, environment variables and an optional TOML
//! file, in that order of precedence, over built-in defaults. Every setting has all three forms
//! (see docs/configuration.md); values are checked when the proxy starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// The Cloudstate proxy: serves a user function's stateful services as gRPC, keeping their
/// state in memory, on disk or in PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "cloudstate-proxy", version)]
pub struct Config {
    /// A TOML file of settings, named like the flags without `--` (e.g. `http-port = 9000`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "CLOUDSTATE_CONFIG")]
    pub config: Option<PathBuf>,

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

    /// Where state is kept: `memory` (lost on exit), `embedded:<directory>` (on disk),
    /// `postgres://user:password@host:port/database` (PostgreSQL).
    #[arg(long, env = "CLOUDSTATE_STORE", default_value = "embedded:./cloudstate-data", value_parser = parse_store)]
    pub store: StoreConfig,

    /// Connections to PostgreSQL at most (a `postgres://` store): two write, the rest read.
    #[arg(long, env = "STORE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub store_pool_size: u32,

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

    /// On SIGTERM/SIGINT, how long in-flight calls may take to finish before the proxy exits.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Longest wait between two discovery attempts while the user function is not up.
    #[arg(long, env = "DISCOVERY_MAX_BACKOFF", default_value = "5s", value_parser = parse_duration)]
    pub discovery_max_backoff: Duration,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// Reads the configuration from `args` (the first is the program name), the environment and
    /// the file `--config` names. Help, version and every invalid value end up in the error.
    pub fn load<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Config::command().try_get_matches_from(&args)?;
        let Some(path) = matches.get_one::<PathBuf>("config") else {
            return Ok(Config::from_arg_matches(&matches)?);
        };
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.clone(),
            error: error.to_string(),
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|error: toml::de::Error| ConfigError::File {
                    path: path.clone(),
                    error: error.to_string(),
                })?;
        // File values become flags for the settings that were left at their defaults, so they
        // are checked by the same parsers and lose to flags and environment variables.
        let mut args = args;
        for (key, value) in table {
            let id = key.replace('-', "_");
            let known = Config::command()
                .get_arguments()
                .any(|arg| arg.get_id() == id.as_str() && id != "config");
            if !known {
                return Err(ConfigError::File {
                    path: path.clone(),
                    error: format!("unknown setting `{key}`"),
                });
            }
            if matches.value_source(&id) != Some(ValueSource::DefaultValue) {
                continue;
            }
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(number) => number.to_string(),
                toml::Value::Float(number) => number.to_string(),
                toml::Value::Boolean(flag) => flag.to_string(),
                other => {
                    return Err(ConfigError::File {
                        path: path.clone(),
                        error: format!(
                            "`{key}` must be a string or a number, not {}",
                            other.type_str()
                        ),
                    });
                }
            };
            args.push(format!("--{key}={value}").into());
        }
        Ok(Config::try_parse_from(args)?)
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or environment variable is invalid (or help/version was asked for).
    #[error(transparent)]
    Invalid(#[from] clap::Error),
    /// The config file could not be read or holds an invalid entry.
    #[error("config file {}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: String,
    },
}

/// Where the proxy keeps state.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In process memory.
    Memory,
    /// The embedded on-disk store in this directory.
    Embedded(PathBuf),
    /// The PostgreSQL database at this `postgres://` URL.
    Postgres(String),
}

/// Shows a PostgreSQL URL without its password: the configuration is logged.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Memory => f.write_str("Memory"),
            StoreConfig::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
            StoreConfig::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let authority = rest.split('/').next().unwrap_or(rest);
                let shown = match authority.rsplit_once('@') {
                    Some((user_info, host)) if user_info.contains(':') => {
                        let user = user_info.split(':').next().unwrap_or("");
                        let path = &rest[authority.len()..];
                        format!("{scheme}://{user}:***@{host}{path}")
                    }
                    _ => url.clone(),
                };
                f.debug_tuple("Postgres").field(&shown).finish()
            }
        }
    }
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
        Ok(StoreConfig::Postgres(value.to_owned()))
    } else {
        Err(format!(
            "unknown store `{value}`: expected `memory`, `embedded:<directory>` or \
             `postgres://user:password@host:port/database`"
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
            &["p", "--store-pool-size", "1"][..],
        ] {
            assert!(
                Config::try_parse_from(args).is_err(),
                "{args:?} was accepted"
            );
        }
        let err = Config::try_parse_from(["p", "--store", "mysql://x"]).unwrap_err();
        assert!(err.to_string().contains("unknown store"), "{err}");
    }

    #[test]
    fn a_postgres_store_is_parsed_and_logged_without_its_password() {
        for url in ["postgres://u:secret@db:5432/state", "postgresql://db/state"] {
            let config = Config::try_parse_from(["p", "--store", url]).unwrap();
            assert_eq!(config.store, StoreConfig::Postgres(url.into()));
            assert_eq!(config.store_pool_size, 10);
        }
        let config = Config::try_parse_from([
            "p",
            "--store",
            "postgres://u:secret@db:5432/state",
            "--store-pool-size",
            "4",
        ])
        .unwrap();
        assert_eq!(config.store_pool_size, 4);
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("postgres://u:***@db:5432/state"), "{shown}");
    }

    fn config_file(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, contents.as_bytes()).unwrap();
        file
    }

    #[test]
    fn a_config_file_sets_what_flags_leave_at_their_defaults() {
        let file = config_file(
            "http-port = 9100\nstore = \"memory\"\ncommand-timeout = \"2s\"\nlog-format = \"json\"\n",
        );
        let path = file.path().to_str().unwrap();
        let config = Config::load(["p", "--config", path, "--http-port", "9200"]).unwrap();
        assert_eq!(config.http_port, 9200, "the flag wins over the file");
        assert_eq!(config.store, StoreConfig::Memory);
        assert_eq!(config.command_timeout, Duration::from_secs(2));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.user_function_port, 8080,
            "untouched settings keep their default"
        );
    }

    #[test]
    fn a_config_file_with_mistakes_is_refused_with_a_reason() {
        for (contents, expected) in [
            ("bogus = 1", "unknown setting `bogus`"),
            ("http-port = \"x\"", "--http-port"),
            ("command-timeout = \"0s\"", "longer than zero"),
            ("store = [1]", "must be a string or a number"),
            ("http-port = ", "config file"),
        ] {
            let file = config_file(contents);
            let error = Config::load(["p", "--config", file.path().to_str().unwrap()])
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{contents:?}: {error}");
        }
        let error = Config::load(["p", "--config", "/nonexistent/cloudstate.toml"]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/cloudstate.toml"),
            "{error}"
        );
    }
}

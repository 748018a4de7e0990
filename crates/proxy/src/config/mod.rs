//! The proxy's configuration: command-line flags, environment variables and an optional TOML
//! file, in that order of precedence, over built-in defaults. Every setting has all three forms;
//! values are checked when the proxy starts.
//!
//! Settings come in groups, one module each, flattened into [`Config`]: a group is a clap
//! `Args` struct whose defaults are taken from the `Default` of the library type it configures
//! (so each default is written once) and which converts into that type. The table in
//! docs/configuration.md is generated from these definitions by a test, which also keeps the two
//! equal.

mod autoscaler;
mod engine;
mod server;
mod store;
mod user_function;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

pub use autoscaler::{AutoscalerOptions, ScalerChoice};
pub use engine::EngineOptions;
pub use server::{LogFormat, ServerOptions};
pub(crate) use store::parse_store;
pub use store::{StoreConfig, StoreOptions};
pub use user_function::UserFunctionOptions;

/// The Cloudstate proxy: serves a user function's stateful services as gRPC and HTTP/JSON,
/// keeping their state in memory, on disk or in PostgreSQL.
#[derive(Debug, Parser)]
#[command(
    name = "cloudstate-proxy",
    version,
    after_help = "To look at what a store holds: cloudstate-proxy inspect --help"
)]
pub struct Config {
    /// A TOML file of settings, named like the flags without `--` (e.g. `http-port = 9000`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "CLOUDSTATE_CONFIG")]
    pub config: Option<PathBuf>,

    /// The proxy's port, logging and shutdown.
    #[command(flatten)]
    pub server: ServerOptions,

    /// Where the user function is and how discovery waits for it.
    #[command(flatten)]
    pub user_function: UserFunctionOptions,

    /// Where state is kept.
    #[command(flatten)]
    pub store: StoreOptions,

    /// Entities, commands and forwards.
    #[command(flatten)]
    pub engine: EngineOptions,

    /// The autoscaler.
    #[command(flatten)]
    pub autoscaler: AutoscalerOptions,
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
        let file_error = |error: String| ConfigError::File {
            path: path.clone(),
            error,
        };
        let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|error: toml::de::Error| file_error(error.to_string()))?;
        // File values become flags for the settings that were left at their defaults, so they
        // are checked by the same parsers and lose to flags and environment variables.
        let mut args = args;
        for (key, value) in table {
            let id = key.replace('-', "_");
            let known = Config::command()
                .get_arguments()
                .any(|arg| arg.get_id() == id.as_str() && id != "config");
            if !known {
                return Err(file_error(format!("unknown setting `{key}`")));
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
                    return Err(file_error(format!(
                        "`{key}` must be a string or a number, not {}",
                        other.type_str()
                    )));
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

/// A duration setting, written like `500ms`, `30s` or `2m`; never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let duration = humantime::parse_duration(value)
            .map_err(|e| format!("`{value}` is not a duration like 500ms, 30s or 2m: {e}"))?;
        if duration.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(HumanDuration(duration))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl From<HumanDuration> for Duration {
    fn from(duration: HumanDuration) -> Duration {
        duration.0
    }
}

/// A size in bytes, written as a number of bytes or with a binary unit: `4194304`, `512KiB`,
/// `4MiB`, `1GiB`; never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let text = value.trim();
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = match text[digits.len()..].to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{value}`: write bytes, KiB, MiB or GiB"
                ));
            }
        };
        let number: usize = digits
            .trim()
            .parse()
            .map_err(|_| format!("`{value}` is not a size like 4194304, 512KiB or 4MiB"))?;
        match number.checked_mul(unit) {
            Some(0) => Err("must be larger than zero".into()),
            Some(bytes) => Ok(ByteSize(bytes)),
            None => Err(format!("`{value}` is too large")),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if bytes >= size && bytes.is_multiple_of(size) {
                return write!(f, "{}{unit}", bytes / size);
            }
        }
        write!(f, "{bytes}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings as Markdown tables, one per group (its help heading): flag and file key,
    /// environment variable, default, meaning. docs/configuration.md holds exactly this between
    /// its `settings` markers.
    fn settings_tables() -> String {
        let command = Config::command();
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "help" | "version") {
                continue;
            }
            let heading = arg.get_help_heading().unwrap_or("General").to_owned();
            let env = arg
                .get_env()
                .map(|env| format!("`{}`", env.to_string_lossy()))
                .unwrap_or_default();
            let default = match arg.get_default_values() {
                [] => "none".to_owned(),
                values => values
                    .iter()
                    .map(|value| format!("`{}`", value.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let meaning = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|help| {
                    help.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let row = format!("| `--{long}` | {env} | {default} | {meaning} |");
            match groups.iter_mut().find(|(name, _)| *name == heading) {
                Some((_, rows)) => rows.push(row),
                None => groups.push((heading, vec![row])),
            }
        }
        let mut out = String::new();
        for (heading, rows) in groups {
            out.push_str(&format!(
            "\n### {heading}\n\n| flag / file key | environment | default | meaning |\n|---|---|---|---|\n"
        ));
            for row in rows {
                out.push_str(&row);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn defaults_follow_the_conventions() {
        let config = Config::try_parse_from(["cloudstate-proxy"]).unwrap();
        assert_eq!(config.server.http_port, 9000);
        assert_eq!(config.user_function.user_function_port, 8080);
        assert_eq!(
            config.store.store,
            StoreConfig::Embedded(PathBuf::from("./cloudstate-data"))
        );
        assert_eq!(config.server.cors_allowed_origins, None, "CORS is off");
        let config =
            Config::try_parse_from(["p", "--cors-allowed-origins", "http://localhost:8000"])
                .unwrap();
        assert_eq!(
            config.server.cors_allowed_origins.map(|o| o.to_string()),
            Some("http://localhost:8000".into())
        );
    }

    #[test]
    fn defaults_are_those_of_the_configured_libraries() {
        let config = Config::try_parse_from(["cloudstate-proxy"]).unwrap();
        let engine = cloudstate_engine::EngineConfig::default();
        let from_flags = config.engine.engine_config();
        assert_eq!(from_flags.command_timeout, engine.command_timeout);
        assert_eq!(from_flags.passivation_timeout, engine.passivation_timeout);
        assert_eq!(from_flags.mailbox_capacity, engine.mailbox_capacity);
        assert_eq!(from_flags.max_chain_length, engine.max_chain_length);
        assert_eq!(from_flags.max_message_size, engine.max_message_size);
        let postgres = cloudstate_store_postgres::PostgresOptions::default();
        let from_flags = config.store.postgres_options();
        assert_eq!(from_flags.pool_size, postgres.pool_size);
        assert_eq!(from_flags.writers, postgres.writers);
        assert_eq!(from_flags.connect_timeout, postgres.connect_timeout);
        assert_eq!(from_flags.acquire_timeout, postgres.acquire_timeout);
        assert_eq!(from_flags.statement_timeout, postgres.statement_timeout);
    }

    #[test]
    fn sizes_are_read_in_bytes_or_binary_units() {
        for (text, bytes) in [
            ("4194304", 4 << 20),
            ("4MiB", 4 << 20),
            ("512KiB", 512 << 10),
            ("1GiB", 1 << 30),
            ("100b", 100),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
            assert_eq!(
                ByteSize(bytes).to_string().parse::<ByteSize>(),
                Ok(ByteSize(bytes))
            );
        }
        for text in ["0", "4MB", "MiB", "-1", "99999999999999999999GiB"] {
            assert!(text.parse::<ByteSize>().is_err(), "{text} was accepted");
        }
        let config = Config::try_parse_from(["p", "--max-message-size", "16MiB"]).unwrap();
        assert_eq!(config.engine.engine_config().max_message_size, 16 << 20);
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        for args in [
            &["p", "--store", "mysql://x"][..],
            &["p", "--cors-allowed-origins", "localhost:8000"][..],
            &["p", "--store", "embedded:"][..],
            &["p", "--command-timeout", "soon"][..],
            &["p", "--command-timeout", "0s"][..],
            &["p", "--entity-mailbox-capacity", "0"][..],
            &["p", "--http-port", "99999"][..],
            &["p", "--store-pool-size", "1"][..],
            &["p", "--store-writers", "0"][..],
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
            assert_eq!(config.store.store, StoreConfig::Postgres(url.into()));
            assert_eq!(config.store.store_pool_size, 10);
        }
        let config = Config::try_parse_from([
            "p",
            "--store",
            "postgres://u:secret@db:5432/state",
            "--store-pool-size",
            "4",
            "--store-statement-timeout",
            "3s",
        ])
        .unwrap();
        assert_eq!(config.store.postgres_options().pool_size, 4);
        assert_eq!(
            config.store.postgres_options().statement_timeout,
            Duration::from_secs(3)
        );
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
        assert_eq!(config.server.http_port, 9200, "the flag wins over the file");
        assert_eq!(config.store.store, StoreConfig::Memory);
        assert_eq!(
            config.engine.engine_config().command_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(config.server.log_format, LogFormat::Json);
        assert_eq!(
            config.user_function.user_function_port, 8080,
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

    /// docs/configuration.md lists every setting as the code defines it. Run with
    /// `UPDATE_DOCS=1` to rewrite the tables after changing a setting.
    #[test]
    fn the_documented_settings_are_the_defined_ones() {
        const START: &str = "<!-- settings:start (generated from the code: UPDATE_DOCS=1 cargo test -p cloudstate-proxy) -->\n";
        const END: &str = "<!-- settings:end -->";
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        let (before, rest) = docs.split_once(START).expect("docs have the start marker");
        let (documented, after) = rest.split_once(END).expect("docs have the end marker");
        let tables = settings_tables();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{before}{START}{tables}\n{END}{after}")).unwrap();
            return;
        }
        assert_eq!(
            documented.trim(),
            tables.trim(),
            "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test -p cloudstate-proxy"
        );
    }
}

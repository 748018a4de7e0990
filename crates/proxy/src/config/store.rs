//! Where state is kept, and how the PostgreSQL store uses its database.

use std::path::PathBuf;

use clap::Args;
use cloudstate_store_postgres::PostgresOptions;

use super::HumanDuration;

/// The store and its settings; PostgreSQL defaults are [`PostgresOptions::default`]'s.
#[derive(Debug, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreOptions {
    /// Where state is kept: `memory` (lost on exit), `embedded:<directory>` (on disk),
    /// `postgres://user:password@host:port/database` (PostgreSQL).
    #[arg(long, env = "CLOUDSTATE_STORE", default_value = "embedded:./cloudstate-data", value_parser = parse_store)]
    pub store: StoreConfig,

    /// Connections to PostgreSQL at most (a `postgres://` store), at least 2: the writers'
    /// and the rest for reads.
    #[arg(
        long,
        env = "STORE_POOL_SIZE",
        default_value_t = PostgresOptions::default().pool_size,
        value_parser = clap::value_parser!(u32).range(2..)
    )]
    pub store_pool_size: u32,

    /// PostgreSQL writer tasks, each with its own connection, committing batches in parallel
    /// (at most `store-pool-size` - 1 are used).
    #[arg(
        long,
        env = "STORE_WRITERS",
        default_value_t = PostgresOptions::default().writers,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub store_writers: u32,

    /// Longest wait for a new connection to PostgreSQL.
    #[arg(long, env = "STORE_CONNECT_TIMEOUT", default_value_t = HumanDuration(PostgresOptions::default().connect_timeout))]
    pub store_connect_timeout: HumanDuration,

    /// Longest wait for a free PostgreSQL read connection, or for room in a writer's queue.
    #[arg(long, env = "STORE_ACQUIRE_TIMEOUT", default_value_t = HumanDuration(PostgresOptions::default().acquire_timeout))]
    pub store_acquire_timeout: HumanDuration,

    /// Longest a PostgreSQL statement may run (the server's `statement_timeout`).
    #[arg(long, env = "STORE_STATEMENT_TIMEOUT", default_value_t = HumanDuration(PostgresOptions::default().statement_timeout))]
    pub store_statement_timeout: HumanDuration,
}

impl StoreOptions {
    /// How a `postgres://` store uses its database.
    pub fn postgres_options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: self.store_pool_size,
            writers: self.store_writers,
            connect_timeout: self.store_connect_timeout.into(),
            acquire_timeout: self.store_acquire_timeout.into(),
            statement_timeout: self.store_statement_timeout.into(),
        }
    }
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

/// Reads a `--store` value.
pub(crate) fn parse_store(value: &str) -> Result<StoreConfig, String> {
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

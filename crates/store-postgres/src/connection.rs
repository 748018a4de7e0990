//! Connections: opening them with bounded waits, a small pool for reads, and how database
//! errors become [`StoreError`]s.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cloudstate_store::StoreError;
use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use tokio::sync::{Semaphore, SemaphorePermit};

/// An idle connection unused for longer than this is checked with a round trip before it is
/// handed out again: the server may have restarted meanwhile without anything noticing.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Opens connections to one database with the store's session settings.
pub(crate) struct Connector {
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// Client-side bound on every statement; the server enforces the same `statement_timeout`.
    pub(crate) statement_timeout: Duration,
    /// `host:port/database`, for messages (never the password).
    pub(crate) address: String,
}

impl Connector {
    pub(crate) fn new(
        options: PgConnectOptions,
        connect_timeout: Duration,
        statement_timeout: Duration,
    ) -> Self {
        let host = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        let address = format!("{host}/{}", options.get_database().unwrap_or("postgres"));
        let millis = statement_timeout.as_millis().max(1);
        let options = options.application_name("cloudstate-proxy").options([
            ("statement_timeout", format!("{millis}ms")),
            // A connection this client gave up on mid-transaction releases its locks soon.
            (
                "idle_in_transaction_session_timeout",
                format!("{}ms", millis.saturating_mul(2)),
            ),
        ]);
        Connector {
            options,
            connect_timeout,
            statement_timeout,
            address,
        }
    }

    /// The same, for sessions in which every transaction is read-only: the server refuses any
    /// write.
    pub(crate) fn read_only(mut self) -> Self {
        self.options = self
            .options
            .options([("default_transaction_read_only", "on")]);
        self
    }

    /// Opens a connection, failing after the connect timeout.
    pub(crate) async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        match tokio::time::timeout(
            self.connect_timeout,
            PgConnection::connect_with(&self.options),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connect_timeout),
            ))),
        }
    }

    /// Runs one database call, failing with a timeout error (an I/O error, so the connection
    /// is treated as lost) after [`statement_timeout`](Self::statement_timeout) plus a second
    /// for the server's own timeout to arrive first.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, sqlx::Error> {
        let limit = self.statement_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from the server within {limit:?}"),
            ))),
        }
    }
}

/// A pool of connections for reads. Unlike sqlx's pool it fails at once when the server refuses
/// connections (sqlx's keeps retrying until its acquire timeout), and it drops every idle
/// connection as soon as one operation has lost its connection.
pub(crate) struct Pool {
    connector: Arc<Connector>,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    permits: Semaphore,
    size: usize,
    acquire_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(connector: Arc<Connector>, size: usize, acquire_timeout: Duration) -> Self {
        Pool {
            connector,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            size,
            acquire_timeout,
        }
    }

    /// Puts a connection opened elsewhere into the pool, if there is room.
    pub(crate) fn give(&self, connection: PgConnection) {
        let mut idle = self.lock();
        if idle.len() < self.size {
            idle.push((connection, Instant::now()));
        }
    }

    /// A connection for one operation: an idle one (checked with a round trip if it has been
    /// idle for a while) or a new one. Waits at most the acquire timeout for a free slot.
    pub(crate) async fn acquire(&self) -> Result<Lease<'_>, StoreError> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "all {} read connections to PostgreSQL at {} stayed busy for {:?}",
                    self.size, self.connector.address, self.acquire_timeout
                ))
            })?
            .map_err(|_| StoreError::Unavailable("the read pool is closed".into()))?;
        let popped = self.lock().pop();
        if let Some((mut connection, since)) = popped {
            if since.elapsed() < CHECK_IDLE_AFTER
                || self.connector.bounded(connection.ping()).await.is_ok()
            {
                return Ok(Lease {
                    pool: self,
                    connection,
                    _permit: permit,
                });
            }
            // The others idled as long and most likely lead to the same lost server.
            self.lock().clear();
        }
        let connection = self
            .connector
            .connect()
            .await
            .map_err(|error| self.failure("connecting", error))?;
        Ok(Lease {
            pool: self,
            connection,
            _permit: permit,
        })
    }

    /// The error for a failed read; if it broke the connection, the idle ones are dropped too
    /// (they most likely lead to the same dead server).
    pub(crate) fn failure(&self, what: &str, error: sqlx::Error) -> StoreError {
        if is_connection_error(&error) {
            self.lock().clear();
        }
        unavailable(&self.connector.address, what, &error)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection lent by the [`Pool`]. [`release`](Self::release) returns it; dropping it
/// instead (after an error, a timeout, or a cancelled caller) closes it, since its state is
/// unknown.
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    connection: PgConnection,
    _permit: SemaphorePermit<'p>,
}

impl Lease<'_> {
    /// The connection.
    pub(crate) fn connection(&mut self) -> &mut PgConnection {
        &mut self.connection
    }

    /// Returns the connection to the pool after a successful operation.
    pub(crate) fn release(self) {
        let Lease {
            pool, connection, ..
        } = self;
        pool.lock().push((connection, Instant::now()));
    }
}

/// Whether `error` means the connection (or the server) is gone, rather than a statement
/// being refused on a healthy connection.
pub(crate) fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // connection_exception, admin_shutdown, crash_shutdown, cannot_connect_now
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Whether `error` is a client-side timeout of [`Connector::connect`] or
/// [`Connector::bounded`]: the server may still be working on the statement.
pub(crate) fn timed_out(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(error) if error.kind() == std::io::ErrorKind::TimedOut)
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// `StoreError::Unavailable` for `what` failing against the database at `address`.
pub(crate) fn unavailable(address: &str, what: &str, error: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL at {address}: {what} failed: {error}"))
}

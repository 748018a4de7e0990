//! The connection to the user function, discovery, and what the proxy knows of the user
//! function's health.
//!
//! # Reachability
//! Any failure of a stream or call to the user function starts (at most one) watcher task,
//! which checks whether the user function accepts connections. While it does not, the user
//! function is **down**: new entity streams and action calls fail at once with UNAVAILABLE
//! instead of each trying to connect, and the watcher tries again after a delay that doubles
//! from [`RETRY_INITIAL`] up to [`RETRY_MAX`], with jitter. Loss and return are logged once each
//! and shown by the `cloudstate_user_function_up` gauge.
//!
//! # Liveness
//! [`UserFunction::probe`] makes a gRPC call (`grpc.health.v1.Health/Check`) on the shared
//! connection and waits, boundedly, for any answer: a user function that is frozen (SIGSTOP, a
//! stuck event loop) still accepts TCP connections but answers nothing, so readiness turns
//! false. Any gRPC status the user function sends (UNIMPLEMENTED, for most support libraries)
//! counts as alive. A probe that gets an answer ends a known outage at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cloudstate_protocol::action::action_protocol_client::ActionProtocolClient;
use cloudstate_protocol::crdt::crdt_client::CrdtClient;
use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
use cloudstate_protocol::valueentity::value_entity_client::ValueEntityClient;
use cloudstate_protocol::{EntitySpec, ProxyInfo, UserFunctionError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Error;
use crate::metrics::UserFunctionMetrics;
use crate::model::EntityKind;

/// The first wait before checking again whether a lost user function is back.
pub const RETRY_INITIAL: Duration = Duration::from_millis(100);

/// The longest wait between two checks whether a lost user function is back.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

/// How long one reachability check (a TCP connect) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// One HTTP/2 connection to the user function, shared by every entity stream and call. Cheap to
/// clone.
///
/// Connects lazily and reconnects by itself after the user function restarts.
#[derive(Clone, Debug)]
pub struct UserFunction {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channel: Channel,
    address: String,
    /// Largest message accepted from the user function (and sent to it).
    max_message_size: usize,
    /// Set while the user function is known not to accept connections.
    down: AtomicBool,
    /// Since when it is down; the lock orders the loss and return of the user function.
    down_since: Mutex<Option<Instant>>,
    /// Set while a watcher task runs.
    watching: AtomicBool,
    /// Wakes a waiting watcher to check again at once (a probe got an answer).
    recheck: Notify,
    metrics: OnceLock<UserFunctionMetrics>,
}

impl UserFunction {
    /// A connection to the user function at `host:port` (plaintext HTTP/2), exchanging messages
    /// of at most `max_message_size` bytes.
    pub fn new(
        host: &str,
        port: u16,
        max_message_size: usize,
    ) -> Result<Self, tonic::transport::Error> {
        let address = format!("{host}:{port}");
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .initial_connection_window_size(4 * 1024 * 1024)
            .initial_stream_window_size(1024 * 1024)
            .connect_lazy();
        Ok(UserFunction {
            inner: Arc::new(Inner {
                channel,
                address,
                max_message_size,
                down: AtomicBool::new(false),
                down_since: Mutex::new(None),
                watching: AtomicBool::new(false),
                recheck: Notify::new(),
                metrics: OnceLock::new(),
            }),
        })
    }

    /// `host:port` of the user function.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Records reachability in `metrics` from now on (the engine calls this once).
    pub(crate) fn record_into(&self, metrics: UserFunctionMetrics) {
        metrics.set_up(!self.is_down());
        let _ = self.inner.metrics.set(metrics);
    }

    /// Whether the user function is known not to accept connections (see the module docs).
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Acquire)
    }

    /// Fails at once while the user function is known to be down: nothing is sent, so the
    /// caller may retry. The watcher checks again soon (at most every [`RETRY_INITIAL`] while
    /// commands keep arriving), so a user function that is back serves again quickly.
    pub(crate) fn check_up(&self) -> Result<(), Error> {
        if self.is_down() {
            self.inner.recheck.notify_one();
            return Err(Error::UserFunctionDown(self.inner.address.clone()));
        }
        Ok(())
    }

    /// Tells the watcher that a stream or call to the user function failed: it checks whether
    /// the user function is still reachable (unless a check is under way).
    pub(crate) fn connection_failed(&self) {
        if self
            .inner
            .watching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tokio::spawn(self.clone().watch());
        }
    }

    /// Checks reachability until the user function accepts connections: after a delay that
    /// doubles from [`RETRY_INITIAL`] to [`RETRY_MAX`] (with jitter), or sooner when a command
    /// or a probe asks, but never more often than every [`RETRY_INITIAL`].
    async fn watch(self) {
        let inner = &self.inner;
        let mut delay = RETRY_INITIAL;
        loop {
            let checked = Instant::now();
            match self.connect().await {
                Ok(()) => break,
                Err(cause) => self.mark_down(&cause),
            }
            tokio::select! {
                () = tokio::time::sleep(jitter(delay)) => {}
                () = inner.recheck.notified() => {
                    tokio::time::sleep_until(checked + RETRY_INITIAL).await;
                }
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
        inner.watching.store(false, Ordering::Release);
        self.mark_up();
    }

    /// Records that the user function does not accept connections (logged once per loss).
    fn mark_down(&self, cause: &str) {
        let inner = &self.inner;
        let mut since = inner.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_some() {
            tracing::debug!(user_function = %inner.address, %cause, "the user function is still down");
            return;
        }
        *since = Some(Instant::now());
        inner.down.store(true, Ordering::Release);
        if let Some(metrics) = inner.metrics.get() {
            metrics.lost();
        }
        tracing::warn!(
            user_function = %inner.address,
            %cause,
            "lost the user function: commands fail with UNAVAILABLE until it accepts connections"
        );
    }

    /// Records that the user function answers (logged once per return).
    fn mark_up(&self) {
        let inner = &self.inner;
        let Some(since) = inner
            .down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        inner.down.store(false, Ordering::Release);
        if let Some(metrics) = inner.metrics.get() {
            metrics.set_up(true);
        }
        tracing::warn!(
            user_function = %inner.address,
            down_for = ?since.elapsed(),
            "the user function is reachable again"
        );
    }

    /// One TCP connect to the user function.
    async fn connect(&self) -> Result<(), String> {
        let connect = tokio::net::TcpStream::connect(&self.inner.address);
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Whether the user function answers a gRPC call on the shared connection within
    /// `timeout` (see the module docs); why not otherwise.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        let answer = self.health_check(timeout).await;
        if answer.is_ok() && self.is_down() {
            // Back before the watcher's next check.
            self.mark_up();
            self.inner.recheck.notify_one();
        }
        answer
    }

    async fn health_check(&self, timeout: Duration) -> Result<(), String> {
        let mut client = HealthClient::new(self.inner.channel.clone());
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) if answered(&status) => Ok(()),
            Ok(Err(status)) => Err(format!(
                "the user function at {} cannot be reached: {}",
                self.inner.address,
                describe(&status)
            )),
            Err(_) => Err(format!(
                "the user function at {} does not answer (no reply to a health check within \
                 {timeout:?}): is it frozen or overloaded?",
                self.inner.address
            )),
        }
    }

    /// A client of the event sourced protocol.
    pub fn event_sourced(&self) -> EventSourcedClient<Channel> {
        EventSourcedClient::new(self.inner.channel.clone())
            .max_decoding_message_size(self.inner.max_message_size)
            .max_encoding_message_size(self.inner.max_message_size)
    }

    /// A client of the value entity protocol.
    pub fn value_entity(&self) -> ValueEntityClient<Channel> {
        ValueEntityClient::new(self.inner.channel.clone())
            .max_decoding_message_size(self.inner.max_message_size)
            .max_encoding_message_size(self.inner.max_message_size)
    }

    /// A client of the CRDT protocol.
    pub fn crdt(&self) -> CrdtClient<Channel> {
        CrdtClient::new(self.inner.channel.clone())
            .max_decoding_message_size(self.inner.max_message_size)
            .max_encoding_message_size(self.inner.max_message_size)
    }

    /// A client of the action protocol.
    pub fn action(&self) -> ActionProtocolClient<Channel> {
        ActionProtocolClient::new(self.inner.channel.clone())
            .max_decoding_message_size(self.inner.max_message_size)
            .max_encoding_message_size(self.inner.max_message_size)
    }

    fn discovery(&self) -> EntityDiscoveryClient<Channel> {
        EntityDiscoveryClient::new(self.inner.channel.clone())
            .max_decoding_message_size(self.inner.max_message_size)
            .max_encoding_message_size(self.inner.max_message_size)
    }

    /// Calls `discover` once.
    pub async fn discover(&self) -> Result<EntitySpec, tonic::Status> {
        let info = ProxyInfo {
            protocol_major_version: cloudstate_protocol::PROTOCOL_MAJOR_VERSION,
            protocol_minor_version: cloudstate_protocol::PROTOCOL_MINOR_VERSION,
            proxy_name: "cloudstate-proxy".into(),
            proxy_version: env!("CARGO_PKG_VERSION").into(),
            supported_entity_types: EntityKind::ALL
                .iter()
                .map(|kind| kind.protocol_name().to_owned())
                .collect(),
        };
        Ok(self.discovery().discover(info).await?.into_inner())
    }

    /// Calls `discover` until the user function answers, waiting `initial_backoff` after the first
    /// failure and doubling up to `max_backoff`. Logs every failed attempt.
    pub async fn discover_with_retry(
        &self,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> EntitySpec {
        let mut delay = initial_backoff;
        for attempt in 1u64.. {
            match self.discover().await {
                Ok(spec) => return spec,
                Err(status) => {
                    tracing::warn!(
                        user_function = %self.inner.address,
                        attempt,
                        retry_in = ?delay,
                        error = %describe(&status),
                        "waiting for the user function to answer discovery"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max_backoff);
                }
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    /// Like [`report_error`](Self::report_error), but returns once the call is made (or after
    /// `timeout`): for a mistake after which the proxy exits, which would cut a background
    /// report short.
    pub async fn report_error_before_exit(&self, message: String, timeout: Duration) {
        tracing::warn!(user_function = %self.inner.address, "{message}");
        let mut client = self.discovery();
        let report = client.report_error(UserFunctionError { message });
        let _ = tokio::time::timeout(timeout, report).await;
    }

    /// Tells the user function about a mistake it made. Fire and forget: some support
    /// libraries answer with an error status, which is ignored.
    pub fn report_error(&self, message: String) {
        tracing::warn!(user_function = %self.inner.address, "{message}");
        let mut client = self.discovery();
        tokio::spawn(async move {
            let _ = client.report_error(UserFunctionError { message }).await;
        });
    }
}

/// Whether a failed call was answered by the user function (rather than failed by the
/// connection): any status but those the transport produces.
fn answered(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
    ) && std::error::Error::source(status).is_none()
}

/// Between half of `delay` and all of it, so that proxies that lost the same user function do
/// not retry in step.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let fraction = f64::from(nanos % 1000) / 1000.0;
    delay.mul_f64(0.5 + fraction / 2.0)
}

/// A status's message followed by its root cause ("tcp connect error: Connection refused").
fn describe(status: &tonic::Status) -> String {
    let mut root = None;
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        root = Some(error);
        source = error.source();
    }
    match root {
        Some(root) => format!("{}: {root}", status.message()),
        None => status.message().to_owned(),
    }
}

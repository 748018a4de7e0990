//! The connection to the user function, and discovery.

use std::time::Duration;

use cloudstate_protocol::action::action_protocol_client::ActionProtocolClient;
use cloudstate_protocol::crdt::crdt_client::CrdtClient;
use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
use cloudstate_protocol::valueentity::value_entity_client::ValueEntityClient;
use cloudstate_protocol::{EntitySpec, ProxyInfo, UserFunctionError};
use tonic::transport::{Channel, Endpoint};

use crate::model::EntityKind;

/// One HTTP/2 connection to the user function, shared by every entity stream and call.
///
/// Connects lazily and reconnects by itself after the user function restarts.
#[derive(Clone, Debug)]
pub struct UserFunction {
    channel: Channel,
    address: String,
    /// Largest message accepted from the user function (and sent to it).
    max_message_size: usize,
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
            channel,
            address,
            max_message_size,
        })
    }

    /// `host:port` of the user function.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the user function accepts connections now (a TCP connect, bounded by
    /// `timeout`).
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        let connect = tokio::net::TcpStream::connect(&self.address);
        matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
    }

    /// A client of the event sourced protocol.
    pub fn event_sourced(&self) -> EventSourcedClient<Channel> {
        EventSourcedClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }

    /// A client of the value entity protocol.
    pub fn value_entity(&self) -> ValueEntityClient<Channel> {
        ValueEntityClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }

    /// A client of the CRDT protocol.
    pub fn crdt(&self) -> CrdtClient<Channel> {
        CrdtClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }

    /// A client of the action protocol.
    pub fn action(&self) -> ActionProtocolClient<Channel> {
        ActionProtocolClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
    }

    fn discovery(&self) -> EntityDiscoveryClient<Channel> {
        EntityDiscoveryClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size)
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
                        user_function = %self.address,
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
        tracing::warn!(user_function = %self.address, "{message}");
        let mut client = self.discovery();
        let report = client.report_error(UserFunctionError { message });
        let _ = tokio::time::timeout(timeout, report).await;
    }

    /// Tells the user function about a mistake it made. Fire and forget: some support
    /// libraries answer with an error status, which is ignored.
    pub fn report_error(&self, message: String) {
        tracing::warn!(user_function = %self.address, "{message}");
        let mut client = self.discovery();
        tokio::spawn(async move {
            let _ = client.report_error(UserFunctionError { message }).await;
        });
    }
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

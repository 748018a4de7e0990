//! A gRPC client of the presence service, to call it through the proxy.
//!
//! Written by hand: the client tonic generates has a constructor named `connect`, which clashes
//! with the method `Connect`.

use tonic::codec::Streaming;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::proto::{OnlineStatus, User};

/// Calls `cloudstate.examples.chat.presence.Presence` on a channel (to the proxy).
#[derive(Debug, Clone)]
pub struct PresenceClient {
    inner: tonic::client::Grpc<Channel>,
}

impl PresenceClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        PresenceClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls `Connect`: `user` is online while the returned stream is open (drop it to
    /// disconnect). The stream carries no message. (Named so as not to clash with the
    /// constructors generated clients call `connect`.)
    ///
    /// # Errors
    ///
    /// The call's status when it fails to start.
    pub async fn connect_user(&mut self, user: User) -> Result<Response<Streaming<()>>, Status> {
        self.call("/cloudstate.examples.chat.presence.Presence/Connect", user)
            .await
    }

    /// Calls `Monitor`: `user`'s online status now, then at each change.
    ///
    /// # Errors
    ///
    /// The call's status when it fails to start.
    pub async fn monitor(
        &mut self,
        user: User,
    ) -> Result<Response<Streaming<OnlineStatus>>, Status> {
        self.call("/cloudstate.examples.chat.presence.Presence/Monitor", user)
            .await
    }

    async fn call<Out: prost::Message + Default + Send + 'static>(
        &mut self,
        path: &'static str,
        user: User,
    ) -> Result<Response<Streaming<Out>>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|error| Status::unavailable(format!("the channel is not ready: {error}")))?;
        let codec = tonic_prost::ProstCodec::default();
        self.inner
            .server_streaming(
                tonic::Request::new(user),
                PathAndQuery::from_static(path),
                codec,
            )
            .await
    }
}

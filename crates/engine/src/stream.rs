//! An entity's bidirectional stream to the user function, shared by every entity kind.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Response, Status, Streaming};

use crate::{Error, UserFunction};

type Opening<Out> = Pin<Box<dyn Future<Output = Result<Response<Streaming<Out>>, Status>> + Send>>;

/// How long a closed stream's remaining messages are drained before it is dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One open `handle` call: the proxy writes `In` messages and reads `Out` messages.
pub(crate) struct EntityStream<In, Out> {
    outbound: mpsc::UnboundedSender<In>,
    inbound: Inbound<Out>,
    /// A message read by [`EntityStream::has_ended`], returned by the next `receive`.
    peeked: Option<Out>,
    /// Id of the last command sent on this stream.
    command_id: i64,
    /// Told when the stream fails, so it checks whether the user function is still there.
    user_function: UserFunction,
}

/// The user function's side of the stream. It is opened without waiting for the response
/// headers: some support libraries only send them with their first message, so the proxy
/// writes `init` and the first command (and, for event sourced entities, the replay) before it
/// waits.
enum Inbound<Out> {
    Opening(Opening<Out>),
    Open(Box<Streaming<Out>>),
}

impl<In: Send + 'static, Out: Send + 'static> EntityStream<In, Out> {
    /// Starts a call: `open` receives the stream of outbound messages and returns the call's
    /// future (e.g. `client.handle(stream)`).
    /// Fails at once, opening nothing, while the user function is known to be down.
    pub fn open<F>(
        user_function: &UserFunction,
        open: impl FnOnce(UnboundedReceiverStream<In>) -> F,
    ) -> Result<Self, Error>
    where
        F: Future<Output = Result<Response<Streaming<Out>>, Status>> + Send + 'static,
    {
        user_function.check_up()?;
        let (outbound, receiver) = mpsc::unbounded_channel();
        Ok(EntityStream {
            outbound,
            inbound: Inbound::Opening(Box::pin(open(UnboundedReceiverStream::new(receiver)))),
            peeked: None,
            command_id: 0,
            user_function: user_function.clone(),
        })
    }

    /// Whether the stream is known, without waiting, to have ended: the user function's side
    /// ended or failed, or the call is gone. A command written to such a stream could never be
    /// answered; one not yet written may safely go to a new stream instead. A message already
    /// waiting is kept for the next [`EntityStream::receive`].
    pub fn has_ended(&mut self) -> bool {
        if self.outbound.is_closed() {
            return true;
        }
        if self.peeked.is_some() {
            return false;
        }
        if let Inbound::Opening(opening) = &mut self.inbound {
            match opening.as_mut().now_or_never() {
                None => return false,
                Some(Err(_)) => return true,
                Some(Ok(response)) => {
                    self.inbound = Inbound::Open(Box::new(response.into_inner()));
                }
            }
        }
        let Inbound::Open(inbound) = &mut self.inbound else {
            return false;
        };
        match inbound.message().now_or_never() {
            None => false,
            Some(Ok(Some(message))) => {
                self.peeked = Some(message);
                false
            }
            Some(Ok(None) | Err(_)) => true,
        }
    }

    /// The id of the last command sent on this stream (0 before the first).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// Queues a message for the user function.
    pub fn send(&self, message: In) -> Result<(), Error> {
        self.outbound.send(message).map_err(|_| {
            Error::EntityTerminated("the stream to the user function is closed".into())
        })
    }

    /// The id for the next command: 1, 2, 3, ... on every stream.
    pub fn next_command_id(&mut self) -> i64 {
        self.command_id += 1;
        self.command_id
    }

    /// The next message from the user function; an error if the stream ended or failed.
    pub async fn receive(&mut self) -> Result<Out, Error> {
        if let Some(message) = self.peeked.take() {
            return Ok(message);
        }
        let result = self.next().await;
        if let Err(Error::EntityTerminated(_)) = &result {
            self.user_function.connection_failed();
        }
        result
    }

    async fn next(&mut self) -> Result<Out, Error> {
        if let Inbound::Opening(opening) = &mut self.inbound {
            let response = opening.await.map_err(terminated)?;
            self.inbound = Inbound::Open(Box::new(response.into_inner()));
        }
        let Inbound::Open(inbound) = &mut self.inbound else {
            unreachable!("the stream was opened above");
        };
        match inbound.message().await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::EntityTerminated(
                "the user function closed the entity's stream".into(),
            )),
            Err(status) => Err(terminated(status)),
        }
    }

    /// Half-closes the stream and waits (boundedly) for the user function to finish its side.
    pub async fn close(self) {
        let EntityStream {
            outbound, inbound, ..
        } = self;
        drop(outbound);
        if let Inbound::Open(mut inbound) = inbound {
            let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
    }
}

/// What a failed stream means for the command in flight. A message too large for the
/// receiving side (the proxy's decoder or the user function's) is a permanent failure of what
/// the command produced, not an outage.
fn terminated(status: Status) -> Error {
    // tonic says OUT_OF_RANGE ("... message length too large"), other gRPC implementations
    // RESOURCE_EXHAUSTED.
    let too_large = match status.code() {
        tonic::Code::ResourceExhausted => true,
        tonic::Code::OutOfRange => status.message().contains("message length too large"),
        _ => false,
    };
    if too_large {
        return Error::ResultTooLarge(format!(
            "a message between the proxy and the user function exceeded the maximum message \
             size: {}; nothing of the command was stored",
            status.message()
        ));
    }
    Error::EntityTerminated(format!(
        "stream to the user function failed: {} ({:?})",
        status.message(),
        status.code()
    ))
}

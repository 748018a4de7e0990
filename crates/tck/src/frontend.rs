//! Talking to a user function directly, as a proxy would: the model (frontend) cases open
//! protocol streams, send `init`, events and commands, and check every answer.

use std::fmt;

use cloudstate_protocol::action::ActionCommand;
use cloudstate_protocol::action::ActionResponse;
use cloudstate_protocol::action::action_protocol_client::ActionProtocolClient;
use cloudstate_protocol::crdt::crdt_client::CrdtClient;
use cloudstate_protocol::crdt::{CrdtStreamIn, CrdtStreamOut};
use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
use cloudstate_protocol::eventsourced::{EventSourcedStreamIn, EventSourcedStreamOut};
use cloudstate_protocol::valueentity::value_entity_client::ValueEntityClient;
use cloudstate_protocol::valueentity::{ValueEntityStreamIn, ValueEntityStreamOut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Response, Status, Streaming};

use crate::Error;
use crate::relay::PATIENCE;

/// One protocol stream to the user function: what the runner sends, and the answers it reads.
///
/// The call is started in the background, so messages can be sent before the user function
/// answers the call's headers (some answer them only with their first message).
pub struct Connection<In, Out> {
    what: &'static str,
    sender: Option<mpsc::Sender<In>>,
    call: Option<JoinHandle<Result<Streaming<Out>, Status>>>,
    responses: Option<Streaming<Out>>,
}

impl<In, Out> Connection<In, Out>
where
    In: Send + 'static,
    Out: PartialEq + fmt::Debug + Send + 'static,
{
    fn open<F, Fut>(what: &'static str, start: F) -> Self
    where
        F: FnOnce(ReceiverStream<In>) -> Fut,
        Fut: Future<Output = Result<Response<Streaming<Out>>, Status>> + Send + 'static,
    {
        let (sender, receiver) = mpsc::channel(64);
        let call = start(ReceiverStream::new(receiver));
        Connection {
            what,
            sender: Some(sender),
            call: Some(tokio::spawn(
                async move { call.await.map(Response::into_inner) },
            )),
            responses: None,
        }
    }

    /// Sends `message` to the user function.
    pub async fn send(&mut self, message: In) -> Result<&mut Self, Error> {
        let sender = self.sender.as_ref().ok_or_else(|| {
            Error::Check(format!(
                "{}: sending after the end of the stream",
                self.what
            ))
        })?;
        if sender.send(message).await.is_err() {
            return Err(Error::Check(format!(
                "{}: the user function's call ended before the message could be sent",
                self.what
            )));
        }
        Ok(self)
    }

    /// Ends the runner's side of the stream (half-close).
    pub fn complete(&mut self) -> &mut Self {
        self.sender = None;
        self
    }

    async fn responses(&mut self) -> Result<&mut Streaming<Out>, Error> {
        if let Some(call) = self.call.take() {
            let started = tokio::time::timeout(PATIENCE, call).await.map_err(|_| {
                Error::Check(format!(
                    "{}: the user function did not answer the call within {PATIENCE:?}",
                    self.what
                ))
            })?;
            let responses = started
                .map_err(|error| Error::Check(format!("{}: {error}", self.what)))?
                .map_err(|status| {
                    Error::Check(format!(
                        "{}: the user function refused the call: {status}",
                        self.what
                    ))
                })?;
            self.responses = Some(responses);
        }
        self.responses
            .as_mut()
            .ok_or_else(|| Error::Check(format!("{}: the call already ended", self.what)))
    }

    /// The next message from the user function; fails if the stream ends or fails first, or
    /// after [`PATIENCE`].
    pub async fn next(&mut self) -> Result<Out, Error> {
        match self.next_event().await? {
            Some(message) => Ok(message),
            None => Err(Error::Check(format!(
                "{}: the user function ended the stream, expecting a message",
                self.what
            ))),
        }
    }

    /// The next message, or `None` at the end of the stream.
    async fn next_event(&mut self) -> Result<Option<Out>, Error> {
        let what = self.what;
        let responses = self.responses().await?;
        match tokio::time::timeout(PATIENCE, responses.message()).await {
            Err(_) => Err(Error::Check(format!(
                "{what}: nothing from the user function within {PATIENCE:?}"
            ))),
            Ok(Err(status)) => Err(Error::Check(format!(
                "{what}: the user function failed the stream: {status}"
            ))),
            Ok(Ok(message)) => Ok(message),
        }
    }

    /// Expects the next message from the user function to be `expected`.
    pub async fn expect(&mut self, expected: Out) -> Result<&mut Self, Error> {
        let seen = self.next().await?;
        if seen != expected {
            return Err(Error::Check(format!(
                "{}: expected from the user function\n    {expected:?}\n  but saw\n    {seen:?}",
                self.what
            )));
        }
        Ok(self)
    }

    /// Expects the user function to end its side of the stream normally next.
    pub async fn expect_closed(&mut self) -> Result<(), Error> {
        match self.next_event().await? {
            None => Ok(()),
            Some(message) => Err(Error::Check(format!(
                "{}: expected the end of the stream, but saw\n    {message:?}",
                self.what
            ))),
        }
    }

    /// Ends the runner's side (as a proxy passivating the entity does) and expects the user
    /// function to end its side without sending anything more.
    pub async fn passivate(mut self) -> Result<(), Error> {
        self.complete();
        self.expect_closed().await
    }
}

/// A new event sourced stream to the user function on `channel`.
pub fn event_sourced(channel: &Channel) -> Connection<EventSourcedStreamIn, EventSourcedStreamOut> {
    let mut client = EventSourcedClient::new(channel.clone());
    Connection::open("EventSourced/handle", move |requests| async move {
        client.handle(requests).await
    })
}

/// A new value entity stream to the user function on `channel`.
pub fn value_entity(channel: &Channel) -> Connection<ValueEntityStreamIn, ValueEntityStreamOut> {
    let mut client = ValueEntityClient::new(channel.clone());
    Connection::open("ValueEntity/handle", move |requests| async move {
        client.handle(requests).await
    })
}

/// A new CRDT stream to the user function on `channel`.
pub fn crdt(channel: &Channel) -> Connection<CrdtStreamIn, CrdtStreamOut> {
    let mut client = CrdtClient::new(channel.clone());
    Connection::open("Crdt/handle", move |requests| async move {
        client.handle(requests).await
    })
}

/// A new bidirectional action call (`handleStreamed`) to the user function on `channel`.
pub fn action_streamed(channel: &Channel) -> Connection<ActionCommand, ActionResponse> {
    let mut client = ActionProtocolClient::new(channel.clone());
    Connection::open(
        "ActionProtocol/handleStreamed",
        move |requests| async move { client.handle_streamed(requests).await },
    )
}

/// A new server-streaming action call (`handleStreamedOut`) with `command`.
pub fn action_streamed_out(
    channel: &Channel,
    command: ActionCommand,
) -> Connection<ActionCommand, ActionResponse> {
    let mut client = ActionProtocolClient::new(channel.clone());
    let mut connection = Connection::open(
        "ActionProtocol/handleStreamedOut",
        move |_requests| async move { client.handle_streamed_out(command).await },
    );
    connection.complete();
    connection
}

/// Calls `handleStreamedIn` with `commands` (the header first) and returns the answer.
pub async fn action_streamed_in(
    channel: &Channel,
    commands: Vec<ActionCommand>,
) -> Result<ActionResponse, Error> {
    let mut client = ActionProtocolClient::new(channel.clone());
    let call = client.handle_streamed_in(tokio_stream::iter(commands));
    match tokio::time::timeout(PATIENCE, call).await {
        Err(_) => Err(Error::Check(format!(
            "ActionProtocol/handleStreamedIn: no answer within {PATIENCE:?}"
        ))),
        Ok(result) => result
            .map(Response::into_inner)
            .map_err(|status| Error::Check(format!("ActionProtocol/handleStreamedIn: {status}"))),
    }
}

/// Calls `handleUnary` with `command` and returns the answer.
pub async fn action_unary(
    channel: &Channel,
    command: ActionCommand,
) -> Result<ActionResponse, Error> {
    let mut client = ActionProtocolClient::new(channel.clone());
    match tokio::time::timeout(PATIENCE, client.handle_unary(command)).await {
        Err(_) => Err(Error::Check(format!(
            "ActionProtocol/handleUnary: no answer within {PATIENCE:?}"
        ))),
        Ok(result) => result
            .map(Response::into_inner)
            .map_err(|status| Error::Check(format!("ActionProtocol/handleUnary: {status}"))),
    }
}

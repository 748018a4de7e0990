//! The streams of the stateful entity protocols (`EventSourced`, `ValueEntity`, `Crdt`): one
//! stream per active entity, `init` first, then a session of the entity's type answers each
//! message (at most one reply for event sourced and value entities, any number of messages for
//! CRDT entities).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use cloudstate_protocol as protocol;
use prost::Message;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

use crate::Error;
use crate::service::Described;

/// The messages of one stateful entity protocol.
pub(crate) trait EntityProtocol: 'static {
    /// What the proxy sends (`EventSourcedStreamIn`).
    type In: Message + Default + Unpin + Send + 'static;
    /// What the user function sends (`EventSourcedStreamOut`).
    type Out: Send + Unpin + 'static;
    /// The `oneof` inside [`In`](Self::In).
    type Message: Send;
    /// The first message of a stream.
    type Init: Send;
    /// A session's answer to a message.
    type Reply: Send;

    /// The `oneof` of a message from the proxy.
    fn message(input: Self::In) -> Option<Self::Message>;

    /// The init message, if `message` is one.
    fn init(message: Option<Self::Message>) -> Option<Self::Init>;

    /// The service and entity id an init message names.
    fn target(init: &Self::Init) -> (&str, &str);

    /// The stream messages carrying `reply`.
    fn reply(reply: Self::Reply) -> impl IntoIterator<Item = Self::Out>;

    /// The stream message carrying a failure of the whole stream.
    fn failure(failure: protocol::Failure) -> Self::Out;
}

/// One entity instance on one stream: the dispatch logic the server and the testkit share.
pub(crate) trait Session<P: EntityProtocol>: Send {
    /// Handles one message after `init`: the reply to send, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the stream must end (a second `init`, an empty message, ...).
    fn handle(&mut self, message: Option<P::Message>) -> Result<Option<P::Reply>, Error>;
}

/// A registered entity type, as the server sees it.
pub(crate) trait EntityType<P: EntityProtocol>: Described {
    /// Starts a session for the stream that `init` opens.
    fn start(self: Arc<Self>, init: P::Init) -> Result<Box<dyn Session<P>>, Error>;
}

/// The entity types of one protocol, by service name.
pub(crate) type Registry<P> = Arc<HashMap<String, Arc<dyn EntityType<P>>>>;

/// Where an [`EntityStream`] is.
enum Phase {
    /// Turning input into replies.
    Running,
    /// A protocol error was reported in a failure message; the stream ends with this status.
    Failing(Status),
    /// Ended.
    Done,
}

/// The replies of one entity stream, produced as the proxy's messages arrive: each command is
/// handled when the proxy sends it and the stream is polled, on the stream's own task, so
/// entities run in parallel and one entity's commands run in order.
pub(crate) struct EntityStream<P: EntityProtocol> {
    input: Streaming<P::In>,
    entities: Registry<P>,
    session: Option<Box<dyn Session<P>>>,
    /// Answers to the last message not yet sent.
    pending: VecDeque<P::Out>,
    /// `service/entity id`, for logs.
    entity: String,
    phase: Phase,
}

impl<P: EntityProtocol> EntityStream<P> {
    /// The stream answering `input`, for the entities of `entities`.
    pub(crate) fn new(input: Streaming<P::In>, entities: Registry<P>) -> Self {
        EntityStream {
            input,
            entities,
            session: None,
            pending: VecDeque::new(),
            entity: String::new(),
            phase: Phase::Running,
        }
    }

    /// Handles one message from the proxy; its answers go to `pending`.
    fn process(&mut self, message: Option<P::Message>) -> Result<(), Error> {
        let reply = match &mut self.session {
            Some(session) => session.handle(message)?,
            None => {
                let init = P::init(message)
                    .ok_or_else(|| Error::Protocol("the first message is not init".into()))?;
                let (service, entity_id) = P::target(&init);
                self.entity = format!("{service}/{entity_id}");
                let entity = self
                    .entities
                    .get(service)
                    .ok_or_else(|| Error::Protocol(format!("unknown service {service}")))?;
                self.session = Some(entity.clone().start(init)?);
                None
            }
        };
        self.pending.extend(reply.into_iter().flat_map(P::reply));
        Ok(())
    }
}

impl<P: EntityProtocol> Stream for EntityStream<P> {
    type Item = Result<P::Out, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(out) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(out)));
            }
            match std::mem::replace(&mut this.phase, Phase::Done) {
                Phase::Running => this.phase = Phase::Running,
                Phase::Failing(status) => return Poll::Ready(Some(Err(status))),
                Phase::Done => return Poll::Ready(None),
            }
            let message = match ready!(Pin::new(&mut this.input).poll_next(cx)) {
                Some(Ok(message)) => P::message(message),
                Some(Err(status)) => {
                    // Passed on, so the proxy learns why (e.g. a message over the size limit)
                    // instead of seeing a clean end of stream.
                    tracing::warn!(entity = %this.entity, %status, "the proxy's stream failed");
                    this.phase = Phase::Done;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.phase = Phase::Done;
                    return Poll::Ready(None);
                }
            };
            match this.process(message) {
                Ok(()) => continue,
                Err(error) => {
                    let description = error.to_string();
                    tracing::warn!(entity = %this.entity, "ending the entity stream: {description}");
                    this.phase = Phase::Failing(Status::failed_precondition(description.clone()));
                    return Poll::Ready(Some(Ok(P::failure(protocol::Failure {
                        description,
                        ..protocol::Failure::default()
                    }))));
                }
            }
        }
    }
}

//! One entity instance on one stream of the `Crdt` protocol: the dispatch logic shared by the
//! server and the testkit.
//!
//! A session starts from the stream's `init` (with the state as a delta, if the entity has
//! one) and then answers each message from the proxy with zero or more messages:
//!
//! - `command`: its reply (the handler's client action, side effects, net delta or delete;
//!   `streamed` when a streamed command keeps its stream open), then, if the state changed, the
//!   messages of the other open streams' on-change callbacks;
//! - `delta`: the on-change callbacks' messages;
//! - `stream_cancelled`: the `stream_cancelled_response` (the on-cancel callback's state change
//!   and side effects; empty for a stream that is not open), then, if the state changed, the
//!   on-change callbacks' messages;
//! - `delete`: nothing; the state is gone and the open streams with it.
//!
//! Problems with a single command (unknown name, bad payload, a failing or panicking handler)
//! become a failure reply for that command; problems with the stream itself (a second `init`, a
//! delta that does not apply) become an [`Error::Protocol`], after which the stream must end.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudstate_crdt::View;
use cloudstate_protocol as protocol;
use cloudstate_protocol::crdt::{
    CrdtDelta, CrdtInit, CrdtReply, CrdtStreamCancelledResponse, CrdtStreamIn, CrdtStreamOut,
    CrdtStreamedMessage, crdt_stream_in, crdt_stream_out,
};

use super::delta::{apply_received, received};
use super::{
    Callbacks, ChangeContext, CrdtContext, CrdtEntity, CrdtEntityService, OnCancel, OnChange,
};
use crate::command::{Signature, panicked};
use crate::panic::guard;
use crate::service::{Described, Sealed, Services};
use crate::stream::{EntityProtocol, EntityType, Session};
use crate::{Error, Failure, SideEffect};

/// What the session sends for one message from the proxy.
pub(crate) type Messages = Vec<crdt_stream_out::Message>;

/// An open streamed command.
struct Stream<E> {
    on_change: Option<Box<OnChange<E>>>,
    on_cancel: Option<Box<OnCancel<E>>>,
}

/// A CRDT entity instance driven by protocol messages.
pub(crate) struct CrdtSession<E: CrdtEntity> {
    service: Arc<CrdtEntityService<E>>,
    entity_id: Arc<str>,
    entity: E,
    /// The entity's CRDT as the SDK holds it; `None` while it has none.
    state: Option<View>,
    /// The open streamed commands, by command id.
    streams: BTreeMap<i64, Stream<E>>,
}

impl<E: CrdtEntity> CrdtSession<E> {
    /// Starts the entity described by `init`: its state is the init's delta, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the delta is not a valid state, or when the entity's
    /// [`CrdtEntity::new`] panics.
    pub(crate) fn start(service: Arc<CrdtEntityService<E>>, init: CrdtInit) -> Result<Self, Error> {
        let state = init
            .delta
            .as_ref()
            .map(received)
            .transpose()
            .map_err(|error| Error::Protocol(format!("the init delta: {error}")))?;
        let entity_id: Arc<str> = init.entity_id.into();
        let entity = guard("default", E::default).map_err(Error::Protocol)?;
        Ok(CrdtSession {
            service,
            entity_id,
            entity,
            state,
            streams: BTreeMap::new(),
        })
    }

    /// The entity's CRDT as the SDK holds it.
    pub(crate) fn state(&self) -> Option<&View> {
        self.state.as_ref()
    }

    /// The ids of the open streamed commands, in order.
    pub(crate) fn open_streams(&self) -> Vec<i64> {
        self.streams.keys().copied().collect()
    }

    /// Handles one message after `init`.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a second `init`, a delta that does not apply to the state, and
    /// an empty message.
    pub(crate) fn handle(
        &mut self,
        message: Option<crdt_stream_in::Message>,
    ) -> Result<Messages, Error> {
        match message {
            Some(crdt_stream_in::Message::Init(_)) => {
                Err(Error::Protocol("a second init message".into()))
            }
            Some(crdt_stream_in::Message::Delta(delta)) => {
                self.receive(&delta)?;
                Ok(self.notify())
            }
            Some(crdt_stream_in::Message::Delete(_)) => {
                self.state = None;
                self.streams.clear();
                Ok(Vec::new())
            }
            Some(crdt_stream_in::Message::Command(command)) => Ok(self.command(command)),
            Some(crdt_stream_in::Message::StreamCancelled(cancelled)) => {
                Ok(self.cancelled(cancelled.id))
            }
            None => Err(Error::Protocol("an empty message".into())),
        }
    }

    fn receive(&mut self, delta: &CrdtDelta) -> Result<(), Error> {
        let applied = match &mut self.state {
            Some(state) => apply_received(state, delta),
            None => received(delta).map(|state| self.state = Some(state)),
        };
        applied.map_err(|error| Error::Protocol(format!("a delta that does not apply: {error}")))
    }

    fn command(&mut self, command: protocol::Command) -> Messages {
        let protocol::Command {
            id,
            name,
            payload,
            streamed,
            ..
        } = command;
        let mut ctx = CrdtContext::new(self.entity_id.clone(), id, self.state.take());
        let mut callbacks = Callbacks::new(streamed);
        let result = self.service.commands().dispatch(
            self.service.service_name(),
            &self.entity_id,
            &mut self.entity,
            &name,
            payload,
            &mut ctx,
            &mut callbacks,
        );
        let action = match result {
            Ok(action) => action,
            Err(failure) => {
                self.state = ctx.rollback();
                return vec![failure_reply(id, failure)];
            }
        };
        let committed = match ctx.commit() {
            Ok(committed) => committed,
            Err((failure, state)) => {
                self.state = state;
                return vec![failure_reply(id, failure)];
            }
        };
        self.state = committed.state;
        let keeps_stream = callbacks.keeps_stream() && !committed.deleted;
        let mut messages = vec![crdt_stream_out::Message::Reply(CrdtReply {
            command_id: id,
            client_action: action.map(|action| protocol::ClientAction {
                action: Some(action),
            }),
            side_effects: into_proto(committed.side_effects),
            state_action: committed.action,
            streamed: keeps_stream,
        })];
        if committed.deleted {
            self.streams.clear();
        } else if committed.changed {
            messages.extend(self.notify());
        }
        if keeps_stream {
            self.streams.insert(
                id,
                Stream {
                    on_change: callbacks.on_change,
                    on_cancel: callbacks.on_cancel,
                },
            );
        }
        messages
    }

    /// Runs the on-cancel callback of streamed command `command_id`, whose client went away.
    fn cancelled(&mut self, command_id: i64) -> Messages {
        let mut response = CrdtStreamCancelledResponse {
            command_id,
            ..CrdtStreamCancelledResponse::default()
        };
        let on_cancel = self
            .streams
            .remove(&command_id)
            .and_then(|stream| stream.on_cancel);
        let Some(on_cancel) = on_cancel else {
            return vec![crdt_stream_out::Message::StreamCancelledResponse(response)];
        };
        let mut ctx = CrdtContext::new(self.entity_id.clone(), command_id, self.state.take());
        let entity = &mut self.entity;
        let committed = match guard("the on-cancel callback", || on_cancel(entity, &mut ctx)) {
            Ok(()) => ctx.commit().map_err(|(failure, state)| {
                tracing::error!(entity = %self.entity_id, command_id, "{failure}");
                state
            }),
            Err(panic) => {
                tracing::error!(entity = %self.entity_id, command_id, "{panic}");
                Err(ctx.rollback())
            }
        };
        let committed = match committed {
            Ok(committed) => committed,
            Err(state) => {
                self.state = state;
                return vec![crdt_stream_out::Message::StreamCancelledResponse(response)];
            }
        };
        self.state = committed.state;
        response.side_effects = into_proto(committed.side_effects);
        response.state_action = committed.action;
        let mut messages = vec![crdt_stream_out::Message::StreamCancelledResponse(response)];
        if committed.deleted {
            self.streams.clear();
        } else if committed.changed {
            messages.extend(self.notify());
        }
        messages
    }

    /// Runs the on-change callbacks of the open streams: the state changed.
    fn notify(&mut self) -> Messages {
        let mut messages = Vec::new();
        let mut ended = Vec::new();
        for (&command_id, stream) in &mut self.streams {
            let Some(on_change) = stream.on_change.as_mut() else {
                continue;
            };
            let mut ctx = ChangeContext::new(&self.entity_id, command_id, self.state.as_ref());
            let entity = &mut self.entity;
            let result = guard("the on-change callback", || on_change(entity, &mut ctx))
                .unwrap_or_else(|panic| Err(panicked(&self.entity_id, "on change", &panic)));
            let (side_effects, end_stream) = ctx.into_effects();
            let (action, end_stream) = match result {
                Ok(action) => (action, end_stream),
                // A failure ends the client's stream.
                Err(failure) => (
                    Some(protocol::client_action::Action::Failure(
                        failure.into_proto(command_id),
                    )),
                    true,
                ),
            };
            if end_stream {
                ended.push(command_id);
            } else if action.is_none() && side_effects.is_empty() {
                continue;
            }
            messages.push(crdt_stream_out::Message::StreamedMessage(
                CrdtStreamedMessage {
                    command_id,
                    client_action: action.map(|action| protocol::ClientAction {
                        action: Some(action),
                    }),
                    side_effects: into_proto(side_effects),
                    end_stream,
                },
            ));
        }
        for command_id in ended {
            self.streams.remove(&command_id);
        }
        messages
    }
}

fn into_proto(side_effects: Vec<SideEffect>) -> Vec<protocol::SideEffect> {
    side_effects
        .into_iter()
        .map(SideEffect::into_proto)
        .collect()
}

/// The reply to command `command_id` that carries only `failure`.
fn failure_reply(command_id: i64, failure: Failure) -> crdt_stream_out::Message {
    crdt_stream_out::Message::Reply(CrdtReply {
        command_id,
        client_action: Some(protocol::ClientAction {
            action: Some(protocol::client_action::Action::Failure(
                failure.into_proto(command_id),
            )),
        }),
        ..CrdtReply::default()
    })
}

/// The `Crdt` protocol's messages.
pub(crate) struct CrdtProtocol;

impl EntityProtocol for CrdtProtocol {
    type In = CrdtStreamIn;
    type Out = CrdtStreamOut;
    type Message = crdt_stream_in::Message;
    type Init = CrdtInit;
    type Reply = Messages;

    fn message(input: CrdtStreamIn) -> Option<Self::Message> {
        input.message
    }

    fn init(message: Option<Self::Message>) -> Option<CrdtInit> {
        match message {
            Some(crdt_stream_in::Message::Init(init)) => Some(init),
            _ => None,
        }
    }

    fn target(init: &CrdtInit) -> (&str, &str) {
        (&init.service_name, &init.entity_id)
    }

    fn reply(reply: Messages) -> impl IntoIterator<Item = CrdtStreamOut> {
        reply.into_iter().map(|message| CrdtStreamOut {
            message: Some(message),
        })
    }

    fn failure(failure: protocol::Failure) -> CrdtStreamOut {
        CrdtStreamOut {
            message: Some(crdt_stream_out::Message::Failure(failure)),
        }
    }
}

impl<E: CrdtEntity> Session<CrdtProtocol> for CrdtSession<E> {
    fn handle(
        &mut self,
        message: Option<crdt_stream_in::Message>,
    ) -> Result<Option<Messages>, Error> {
        CrdtSession::handle(self, message).map(Some)
    }
}

impl<E: CrdtEntity> Described for CrdtEntityService<E> {
    fn spec(&self) -> protocol::Entity {
        self.settings().spec(protocol::entity_type::CRDT)
    }

    fn signatures(&self) -> Vec<Signature> {
        self.commands().signatures()
    }
}

impl<E: CrdtEntity> EntityType<CrdtProtocol> for CrdtEntityService<E> {
    fn start(self: Arc<Self>, init: CrdtInit) -> Result<Box<dyn Session<CrdtProtocol>>, Error> {
        Ok(Box::new(CrdtSession::start(self, init)?))
    }
}

impl<E: CrdtEntity> Sealed for CrdtEntityService<E> {
    fn register(self, services: &mut Services) -> Result<(), Error> {
        let entity = Arc::new(self);
        let name = services.check(&*entity)?;
        services.crdt.insert(name, entity);
        Ok(())
    }
}

//! CRDT entities: what an entity type is ([`CrdtEntity`]), its handlers' contexts
//! ([`CrdtContext`], [`StreamedContext`], [`ChangeContext`]), its
//! registration ([`CrdtEntityService`]), and the typed CRDTs its state is one of
//! ([`GCounter`], [`PnCounter`], [`GSet`], [`OrSet`], [`LwwRegister`], [`Flag`], [`OrMap`],
//! [`Vote`]) with the encodings of their elements ([`ToAny`], [`FromAny`], [`ProtoValue`]).
//!
//! # How the state flows
//!
//! The proxy owns the replicated data type; the SDK keeps its plain value for each entity and
//! the handlers read and change that value through typed handles. When a handler returns, the
//! SDK sends the proxy the **net delta** of what it changed (in `CrdtReply.state_action`, with
//! the handler's [`WriteConsistency`]); changes made on other nodes (or by the proxy) arrive as
//! deltas and update the value. The SDK never sends back a delta it received.
//!
//! An entity with no state yet has none: [`CrdtContext::state`] is `None` until a handler
//! creates it ([`CrdtContext::state_or_create`]) or a delta arrives. Its type never changes
//! (reading it as another type is a failure), until it is deleted
//! ([`CrdtContext::delete_state`], or the proxy deletes it).
//!
//! # Streamed commands
//!
//! A server-streaming method is a *streamed command*: its handler (which takes a
//! [`StreamedContext`]) may keep the client's stream open by registering an
//! [on-change callback](StreamedContext::on_change), which runs each time the state changes
//! (a delta from the proxy, or another command's or cancellation's change) and may send the
//! client a message, side effects, or end the stream; and an
//! [on-cancel callback](StreamedContext::on_cancel), which runs when the client goes away and
//! may change the state (and add side effects) in turn.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use cloudstate_crdt::View;
use cloudstate_protocol::crdt::{
    CrdtDelete, CrdtStateAction, CrdtWriteConsistency, crdt_state_action,
};
use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};
use tonic::Code;

use crate::command::{Shape, Signature, decode_request, panicked, unknown_command};
use crate::panic::guard;
use crate::service::EntitySettings;
use crate::{Failure, IntoReply, SideEffect};

mod delta;
pub(crate) mod session;
mod types;
mod value;

use delta::Edits;
pub(crate) use types::any_order;
pub use types::{
    Clock, Crdt, Flag, GCounter, GSet, LwwRegister, OrMap, OrSet, PnCounter, Vote, Votes,
};
use types::{Scope, mismatch};
pub use value::{CrdtValue, FromAny, ProtoValue, ToAny};

/// A CRDT entity type: one instance per entity id (with whatever it keeps locally, e.g. how
/// many of its streams are open on this node), starting as `Self::default()`. Its commands are
/// the methods of the trait `cloudstate-build` generates for its service (e.g.
/// `proto::Presence`), which the type implements.
///
/// The replicated state is not part of `Self`: handlers reach it through their context, as
/// one of the eight CRDT types. `Self` is local to this user function's process (it starts
/// afresh with every stream the proxy opens) and is not rolled back when a handler fails.
pub trait CrdtEntity: Default + Send + 'static {}

impl<T: Default + Send + 'static> CrdtEntity for T {}

/// How many proxy nodes must have a handler's state change before its reply goes to the
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteConsistency {
    /// The node that ran the command (the default).
    #[default]
    Local,
    /// A majority of the nodes.
    Majority,
    /// Every node.
    All,
}

impl WriteConsistency {
    fn into_proto(self) -> CrdtWriteConsistency {
        match self {
            WriteConsistency::Local => CrdtWriteConsistency::Local,
            WriteConsistency::Majority => CrdtWriteConsistency::Majority,
            WriteConsistency::All => CrdtWriteConsistency::All,
        }
    }

    pub(crate) fn from_proto(consistency: i32) -> Self {
        match CrdtWriteConsistency::try_from(consistency) {
            Ok(CrdtWriteConsistency::Majority) => WriteConsistency::Majority,
            Ok(CrdtWriteConsistency::All) => WriteConsistency::All,
            _ => WriteConsistency::Local,
        }
    }
}

/// What a CRDT entity's command handler (or on-cancel callback) can do besides replying: read
/// and change the entity's CRDT, delete it, choose the write consistency, request side effects.
///
/// Everything recorded here is discarded when the handler returns a [`Failure`] (or panics):
/// the state is as it was before the command.
pub struct CrdtContext {
    entity_id: Arc<str>,
    command_id: i64,
    state: Option<View>,
    /// The state before the first access that may change it; `None` while nothing did.
    before: Option<Option<View>>,
    edits: Edits,
    side_effects: Vec<SideEffect>,
    write_consistency: WriteConsistency,
    delete: bool,
}

/// What a successful handler did to the state.
pub(crate) struct Committed {
    /// The state after the handler.
    pub(crate) state: Option<View>,
    /// What to tell the proxy.
    pub(crate) action: Option<CrdtStateAction>,
    /// Whether the handler changed the state (as the proxy sees it).
    pub(crate) changed: bool,
    /// Whether it deleted the entity.
    pub(crate) deleted: bool,
    /// The side effects it asked for.
    pub(crate) side_effects: Vec<SideEffect>,
}

impl CrdtContext {
    pub(crate) fn new(entity_id: Arc<str>, command_id: i64, state: Option<View>) -> Self {
        CrdtContext {
            entity_id,
            command_id,
            state,
            before: None,
            edits: Edits::default(),
            side_effects: Vec::new(),
            write_consistency: WriteConsistency::default(),
            delete: false,
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The command's id on the proxy's stream (for an on-cancel callback: the id of the
    /// streamed command that was cancelled).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// The entity's CRDT as a `T` handle, to read and change; `None` while the entity has no
    /// state.
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the entity's CRDT is of another type.
    pub fn state<T: Crdt>(&mut self) -> Result<Option<T::Handle<'_>>, Failure> {
        let Some(kind) = self.state.as_ref().map(View::kind) else {
            return Ok(None);
        };
        if kind != T::KIND {
            return Err(mismatch(kind, T::KIND));
        }
        self.handle::<T>().map(Some)
    }

    /// The entity's CRDT as a `T` handle; a new, empty `T` (zero, empty, unwritten, off, no
    /// vote) when the entity has no state yet. The proxy learns of a new CRDT with the first
    /// change that makes it differ from empty.
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the entity's CRDT is of another type.
    pub fn state_or_create<T: Crdt>(&mut self) -> Result<T::Handle<'_>, Failure> {
        if self.state.is_none() {
            self.before.get_or_insert(None);
            self.state = Some(View::empty(T::KIND));
        }
        self.handle::<T>()
    }

    fn handle<T: Crdt>(&mut self) -> Result<T::Handle<'_>, Failure> {
        if self.before.is_none() {
            self.before = Some(self.state.clone());
        }
        let Some(state) = self.state.as_mut() else {
            return Err(Failure::new("the entity has no state").with_code(Code::Internal));
        };
        let kind = state.kind();
        T::handle(state, Scope::root(&mut self.edits)).ok_or_else(|| mismatch(kind, T::KIND))
    }

    /// The entity's CRDT as a `T`'s plain value, decoded, without a handle (and without the
    /// copy a handle makes so that a failure can undo its changes); `None` while the entity
    /// has no state.
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the entity's CRDT is of another type,
    /// (`INTERNAL`) when an element does not decode.
    pub fn value<T: Crdt>(&self) -> Result<Option<T::Value>, Failure> {
        self.state.as_ref().map(T::value).transpose()
    }

    /// The state as the SDK holds it, for the crate's test model.
    #[cfg(test)]
    pub(crate) fn view(&self) -> Option<&View> {
        self.state.as_ref()
    }

    /// Deletes the entity's CRDT once the handler succeeds: the proxy deletes it everywhere
    /// and ends the entity's streams (the open streamed commands end too). Any change made in
    /// the same handler is not sent.
    pub fn delete_state(&mut self) {
        self.delete = true;
    }

    /// Sets how many nodes must have this handler's state change before the client gets the
    /// reply (default [`WriteConsistency::Local`]).
    pub fn set_write_consistency(&mut self, consistency: WriteConsistency) {
        self.write_consistency = consistency;
    }

    /// Asks the proxy to make `effect` (a generated call, e.g.
    /// `proto::inventory::reserve(request)`, or `call.synchronous()`) along with
    /// this reply or message: a synchronous one is waited for before the client gets it. The
    /// call's result is ignored.
    pub fn side_effect(&mut self, effect: impl Into<SideEffect>) {
        self.side_effects.push(effect.into());
    }

    /// The handler succeeded: its state change, as the new state and the state action for the
    /// proxy.
    ///
    /// # Errors
    ///
    /// The failure of the command when its change cannot be a delta, with the state as it was
    /// before the command.
    pub(crate) fn commit(self) -> Result<Committed, (Failure, Option<View>)> {
        let action = |action| CrdtStateAction {
            action: Some(action),
            write_consistency: self.write_consistency.into_proto().into(),
        };
        if self.delete {
            return Ok(Committed {
                state: None,
                action: Some(action(crdt_state_action::Action::Delete(CrdtDelete {}))),
                changed: false,
                deleted: true,
                side_effects: self.side_effects,
            });
        }
        let delta = match (&self.before, &self.state) {
            (Some(before), Some(after)) => {
                match delta::outgoing(before.as_ref(), after, &self.edits) {
                    Ok(delta) => delta,
                    Err(error) => {
                        let failure = Failure::new(format!(
                            "Command {} changed the CRDT in a way no delta can express: {error}",
                            self.command_id
                        ))
                        .with_code(Code::Internal);
                        return Err((failure, self.rollback()));
                    }
                }
            }
            _ => None,
        };
        Ok(Committed {
            changed: delta.is_some(),
            action: delta.map(|delta| action(crdt_state_action::Action::Update(delta))),
            state: self.state,
            deleted: false,
            side_effects: self.side_effects,
        })
    }

    /// The handler failed: the state as it was before.
    pub(crate) fn rollback(self) -> Option<View> {
        match self.before {
            Some(before) => before,
            None => self.state,
        }
    }
}

/// The context of a streamed command's handler: a [`CrdtContext`] (it dereferences to one),
/// plus the callbacks that keep the client's stream open.
///
/// When the handler registers a callback and succeeds, the reply tells the proxy to keep the
/// stream open (`CrdtReply.streamed`); the handler's reply (which may be
/// [`Reply::NoReply`](crate::Reply::NoReply)) is the stream's first message. Without a
/// callback the reply is the stream's only message. `Out` is the method's output type.
pub struct StreamedContext<'a, E, Out> {
    ctx: &'a mut CrdtContext,
    callbacks: &'a mut Callbacks<E>,
    output: PhantomData<fn(Out)>,
}

/// An on-change callback, erased: the client action of its message.
pub(crate) type OnChange<E> = dyn FnMut(
        &mut E,
        &mut ChangeContext<'_>,
    ) -> Result<Option<protocol::client_action::Action>, Failure>
    + Send;

/// An on-cancel callback.
pub(crate) type OnCancel<E> = dyn FnOnce(&mut E, &mut CrdtContext) + Send;

/// The callbacks of a streamed command.
pub(crate) struct Callbacks<E> {
    /// Whether the proxy sent the command as streamed (else callbacks are not kept).
    streamed: bool,
    pub(crate) on_change: Option<Box<OnChange<E>>>,
    pub(crate) on_cancel: Option<Box<OnCancel<E>>>,
}

impl<E> Callbacks<E> {
    pub(crate) fn new(streamed: bool) -> Self {
        Callbacks {
            streamed,
            on_change: None,
            on_cancel: None,
        }
    }

    /// Whether the command keeps its stream open.
    pub(crate) fn keeps_stream(&self) -> bool {
        self.on_change.is_some() || self.on_cancel.is_some()
    }
}

impl<E, Out> Deref for StreamedContext<'_, E, Out> {
    type Target = CrdtContext;

    fn deref(&self) -> &CrdtContext {
        self.ctx
    }
}

impl<E, Out> DerefMut for StreamedContext<'_, E, Out> {
    fn deref_mut(&mut self) -> &mut CrdtContext {
        self.ctx
    }
}

impl<E, Out: Message + Name> StreamedContext<'_, E, Out> {
    /// Whether the client's call is a stream that can stay open. It is not when the command
    /// reaches the method another way (a forward or side effect, which the proxy sends as a
    /// plain command); callbacks are then ignored and the reply is all there is.
    pub fn is_streamed(&self) -> bool {
        self.callbacks.streamed
    }

    /// Keeps the stream open and runs `callback` each time the entity's state changes after
    /// this command: a delta from the proxy, or a change by another command or by an
    /// on-cancel callback. It reads the state through its [`ChangeContext`] and returns the
    /// next message for the client (`Out`, or a [`Reply`](crate::Reply):
    /// [`Reply::NoReply`](crate::Reply::NoReply) sends nothing). A [`Failure`] (or a panic)
    /// ends the client's stream with that error. Registering again replaces the callback.
    pub fn on_change<R, F>(&mut self, mut callback: F)
    where
        R: IntoReply<Output = Out>,
        F: FnMut(&mut E, &mut ChangeContext<'_>) -> Result<R, Failure> + Send + 'static,
    {
        if self.callbacks.streamed {
            self.callbacks.on_change = Some(Box::new(move |entity, ctx| {
                callback(entity, ctx).map(|reply| reply.into_reply().into_action())
            }));
        }
    }

    /// Keeps the stream open and runs `callback` once if the client cancels it (not when the
    /// stream ends otherwise). The callback gets a [`CrdtContext`] to change the state and add
    /// side effects, which go to the proxy in the answer to the cancellation (and open streams
    /// see the change). Registering again replaces the callback.
    pub fn on_cancel<F>(&mut self, callback: F)
    where
        F: FnOnce(&mut E, &mut CrdtContext) + Send + 'static,
    {
        if self.callbacks.streamed {
            self.callbacks.on_cancel = Some(Box::new(callback));
        }
    }
}

/// What an on-change callback can do: read the entity's state, request side effects, end the
/// stream.
pub struct ChangeContext<'a> {
    entity_id: &'a str,
    command_id: i64,
    state: Option<&'a View>,
    side_effects: Vec<SideEffect>,
    end_stream: bool,
}

impl<'a> ChangeContext<'a> {
    pub(crate) fn new(entity_id: &'a str, command_id: i64, state: Option<&'a View>) -> Self {
        ChangeContext {
            entity_id,
            command_id,
            state,
            side_effects: Vec::new(),
            end_stream: false,
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        self.entity_id
    }

    /// The id of the streamed command this callback belongs to.
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// The entity's CRDT as a `T`'s plain value, decoded; `None` when the entity has no state.
    /// (The state cannot change here: a stream's message carries no state change.)
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the entity's CRDT is of another type,
    /// (`INTERNAL`) when an element does not decode.
    pub fn value<T: Crdt>(&self) -> Result<Option<T::Value>, Failure> {
        self.state.map(T::value).transpose()
    }

    /// The state as the SDK holds it, for the crate's test model.
    #[cfg(test)]
    pub(crate) fn view(&self) -> Option<&'a View> {
        self.state
    }

    /// Asks the proxy to make `effect` (a generated call, e.g.
    /// `proto::inventory::reserve(request)`, or `call.synchronous()`) along with
    /// this reply or message: a synchronous one is waited for before the client gets it. The
    /// call's result is ignored.
    pub fn side_effect(&mut self, effect: impl Into<SideEffect>) {
        self.side_effects.push(effect.into());
    }

    /// Ends the client's stream after this message (if any); the callbacks are dropped.
    pub fn end_stream(&mut self) {
        self.end_stream = true;
    }

    /// The side effects and whether the stream ends.
    pub(crate) fn into_effects(self) -> (Vec<SideEffect>, bool) {
        (self.side_effects, self.end_stream)
    }
}

/// A unary command handler, erased: decodes the payload, runs the handler, encodes the reply.
type UnaryFn<E> = dyn Fn(
        &mut E,
        Option<Any>,
        &mut CrdtContext,
    ) -> Result<Option<protocol::client_action::Action>, Failure>
    + Send
    + Sync;

/// A streamed command handler, erased.
type StreamedFn<E> = dyn Fn(
        &mut E,
        Option<Any>,
        &mut CrdtContext,
        &mut Callbacks<E>,
    ) -> Result<Option<protocol::client_action::Action>, Failure>
    + Send
    + Sync;

enum Call<E> {
    Unary(Box<UnaryFn<E>>),
    Streamed(Box<StreamedFn<E>>),
}

/// The command handlers of a CRDT entity, by gRPC method name; filled in by the code
/// `cloudstate-build` generates.
///
/// At registration the server checks each handler's input and output types and shape against
/// the method's in the descriptor set. Registering a method twice keeps the last handler.
#[doc(hidden)]
pub struct CrdtCommands<E> {
    handlers: HashMap<String, (Signature, Call<E>)>,
}

impl<E: CrdtEntity> CrdtCommands<E> {
    fn new() -> Self {
        CrdtCommands {
            handlers: HashMap::new(),
        }
    }

    /// Handles the unary method `method` with `handler`, a
    /// `fn(&mut E, In, &mut CrdtContext) -> Result<R, Failure>` where `R` is the output
    /// message, `()` (`google.protobuf.Empty`) or a [`Reply`](crate::Reply).
    pub fn add<In, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        R: IntoReply,
        F: Fn(&mut E, In, &mut CrdtContext) -> Result<R, Failure> + Send + Sync + 'static,
    {
        let name = method.to_owned();
        let call = move |entity: &mut E, payload: Option<Any>, ctx: &mut CrdtContext| {
            let request = decode_request::<In>(&name, payload)?;
            handler(entity, request, ctx).map(|reply| reply.into_reply().into_action())
        };
        let signature = signature::<In, R::Output>(method, Shape::Unary);
        self.handlers
            .insert(method.to_owned(), (signature, Call::Unary(Box::new(call))));
        self
    }

    /// Handles the server streaming method `method` with `handler`, a
    /// `fn(&mut E, In, &mut StreamedContext<E, Out>) -> Result<R, Failure>` where `R` is the
    /// first message: `Out` or a [`Reply<Out>`](crate::Reply). See [`StreamedContext`].
    pub fn streamed<In, Out, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        Out: Message + Name + 'static,
        R: IntoReply<Output = Out>,
        F: Fn(&mut E, In, &mut StreamedContext<'_, E, Out>) -> Result<R, Failure>
            + Send
            + Sync
            + 'static,
    {
        let name = method.to_owned();
        let call = move |entity: &mut E,
                         payload: Option<Any>,
                         ctx: &mut CrdtContext,
                         callbacks: &mut Callbacks<E>| {
            let request = decode_request::<In>(&name, payload)?;
            let mut streamed = StreamedContext {
                ctx,
                callbacks,
                output: PhantomData,
            };
            handler(entity, request, &mut streamed).map(|reply| reply.into_reply().into_action())
        };
        let signature = signature::<In, Out>(method, Shape::StreamedOut);
        self.handlers.insert(
            method.to_owned(),
            (signature, Call::Streamed(Box::new(call))),
        );
        self
    }

    /// Runs command `name` of `service`: its client action, or the failure for an unknown
    /// command, a request that does not decode, a failing or a panicking handler. The
    /// callbacks of a streamed handler go to `callbacks`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one command, borrowed separately from the session"
    )]
    pub(crate) fn dispatch(
        &self,
        service: &str,
        entity_id: &str,
        entity: &mut E,
        name: &str,
        payload: Option<Any>,
        ctx: &mut CrdtContext,
        callbacks: &mut Callbacks<E>,
    ) -> Result<Option<protocol::client_action::Action>, Failure> {
        let (_, call) = self
            .handlers
            .get(name)
            .ok_or_else(|| unknown_command(name, service))?;
        guard("the handler", || match call {
            Call::Unary(call) => call(entity, payload, ctx),
            Call::Streamed(call) => call(entity, payload, ctx, callbacks),
        })
        .unwrap_or_else(|panic| Err(panicked(entity_id, name, &panic)))
    }

    /// The signatures of the handlers.
    pub(crate) fn signatures(&self) -> Vec<Signature> {
        self.handlers
            .values()
            .map(|(signature, _)| signature.clone())
            .collect()
    }
}

fn signature<In: Name, Out: Name>(method: &str, shape: Shape) -> Signature {
    Signature {
        method: method.to_owned(),
        input: In::full_name(),
        output: Out::full_name(),
        shape,
    }
}

/// A CRDT entity type as registered with the [`Server`](crate::Server) or a
/// [`testkit`](crate::testkit): the gRPC service it implements.
pub struct CrdtEntityService<E: CrdtEntity> {
    settings: EntitySettings,
    commands: CrdtCommands<E>,
}

impl<E: CrdtEntity> CrdtEntityService<E> {
    /// The entity serving `service_name` with the handlers `register` adds, persistence id =
    /// `service_name` and the proxy's default passivation. For generated code: users call the
    /// generated `entity()` of their service's module.
    #[doc(hidden)]
    pub fn new(service_name: &str, register: impl FnOnce(&mut CrdtCommands<E>)) -> Self {
        let mut commands = CrdtCommands::new();
        register(&mut commands);
        CrdtEntityService {
            settings: EntitySettings::new(service_name.to_owned()),
            commands,
        }
    }

    /// Sets the persistence id: services with the same one share their entities' state.
    pub fn persistence_id(mut self, persistence_id: impl Into<String>) -> Self {
        self.settings.persistence_id = persistence_id.into();
        self
    }

    /// Asks the proxy to passivate (stop) an entity after `timeout` without commands (an
    /// entity with open streamed commands stays).
    pub fn passivation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.passivation_timeout = Some(timeout);
        self
    }

    /// The full name of the entity's service.
    pub fn service_name(&self) -> &str {
        &self.settings.service_name
    }

    pub(crate) fn commands(&self) -> &CrdtCommands<E> {
        &self.commands
    }

    pub(crate) fn settings(&self) -> &EntitySettings {
        &self.settings
    }
}

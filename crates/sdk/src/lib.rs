//! Write Cloudstate user functions in Rust.
//!
//! A user function is a gRPC server the Cloudstate proxy talks to: the proxy owns the state
//! (journal, snapshots, stored values) and streams it to the user function, which runs the
//! business logic. This crate provides:
//!
//! - **Event sourced entities**: a state type implements [`EventSourcedEntity`] (how events
//!   change it, how it snapshots); its events are protobuf messages gathered in an enum by
//!   [`events!`]; its command handlers take the decoded request and a [`CommandContext`] to
//!   emit events. Registered as an [`EventSourced`].
//! - **Value entities**: the state is a protobuf message ([`ValueEntity`]); command handlers
//!   get the current state as `&self` and a [`ValueContext`] that replaces or deletes it.
//!   Registered as a [`ValueEntityService`].
//! - **CRDT entities**: the proxy replicates the entity's state, one of eight conflict-free
//!   replicated data types ([`crdt`]: counters, sets, a register, a flag, a map, a vote);
//!   handlers of a [`CrdtEntity`] read and change it through typed handles from their
//!   [`CrdtContext`], and the SDK sends the net delta. Server streaming methods are streamed
//!   commands ([`StreamedContext`]): their stream stays open, pushing a message when the state
//!   changes, and may change the state when the client cancels. Registered as a
//!   [`CrdtEntityService`].
//! - **Actions**: stateless `async` handlers of any call shape (unary, server, client and
//!   bidirectional streaming) with an [`ActionContext`]. Registered as an [`ActionService`].
//! - The same [`Reply`] (a message, a forward, or nothing), [`Failure`] (one constructor per
//!   gRPC status code) and side effects for all four kinds; forwards and side effects take a
//!   typed [`Call`].
//! - [`Server`]: serves `cloudstate.EntityDiscovery` and the protocol of each registered
//!   service's kind; services of all kinds may share one server;
//!   [`serve_from_env`](Server::serve_from_env) runs it as a process in one call.
//! - [`testkit`]: drives an entity or calls an action in a unit test exactly as the proxy
//!   would, without one.
//!
//! # The typed surface `cloudstate-build` generates
//!
//! `cloudstate-build` compiles the user's protos in `build.rs`, where each service is declared
//! with the kind that serves it:
//!
//! ```ignore
//! // build.rs
//! cloudstate_build::Builder::new()
//!     .include("proto")
//!     .event_sourced("example.counter.Counter")
//!     .compile(&["proto/counter.proto"])?;
//! ```
//!
//! [`include_protos!`] brings in, per protobuf package, the prost messages and for each
//! service `Counter`:
//!
//! - a trait `Counter` with one handler method per RPC (`fn increment(&self, request:
//!   Increment, ctx: &mut CommandContext<Self>) -> Result<Reply<Value>, Failure>`), which the
//!   entity (or action) type implements;
//! - a module `counter` with the service's full name (`counter::NAME`), its registration
//!   (`counter::entity()`, or `action(value)` for actions) and one function per RPC making a
//!   typed [`Call`] (`counter::increment(request)`) for forwards, side effects and testkits.
//!
//! A misspelt method, a request or reply of the wrong type, a missing handler or a forward to a
//! method with another reply type is a compile error (see [below](#mistakes-are-compile-errors)).
//! [`include_descriptor_set!`] brings in the descriptor set the server reports at discovery.
//!
//! # An event sourced entity
//!
//! `proto/counter.proto`: `service Counter { rpc Increment(Increment) returns (Value); rpc
//! GetValue(GetValue) returns (Value); }` and the event `message Incremented { int64 by = 1; }`.
//!
//! ```
//! use cloudstate::{CommandContext, EventSourced, EventSourcedEntity, Failure, Reply};
//!
//! pub mod proto {
//!     cloudstate::include_protos!("example.counter");
//!     pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
//! }
//!
//! cloudstate::events! {
//!     /// What happens to a counter.
//!     pub enum CounterEvent {
//!         Incremented(proto::Incremented),
//!     }
//! }
//!
//! /// A counter that only goes up; a new one is `Counter::default()`.
//! #[derive(Default)]
//! pub struct Counter {
//!     value: i64,
//! }
//!
//! impl EventSourcedEntity for Counter {
//!     type Event = CounterEvent;
//!     type Snapshot = proto::Value;
//!
//!     fn apply(&mut self, event: &CounterEvent) {
//!         match event {
//!             CounterEvent::Incremented(incremented) => self.value += incremented.by,
//!         }
//!     }
//!
//!     // Entities that never snapshot leave these two out.
//!     fn snapshot(&self) -> Option<proto::Value> {
//!         Some(proto::Value { value: self.value })
//!     }
//!
//!     fn from_snapshot(snapshot: proto::Value) -> Option<Self> {
//!         Some(Counter { value: snapshot.value })
//!     }
//! }
//!
//! impl proto::Counter for Counter {
//!     fn increment(
//!         &self,
//!         request: proto::Increment,
//!         ctx: &mut CommandContext<Self>,
//!     ) -> Result<Reply<proto::Value>, Failure> {
//!         if request.by <= 0 {
//!             return Err(Failure::invalid_argument("Increment must be positive"));
//!         }
//!         ctx.emit(proto::Incremented { by: request.by });
//!         Ok(proto::Value { value: self.value + request.by }.into())
//!     }
//!
//!     fn get_value(
//!         &self,
//!         _: proto::GetValue,
//!         _: &mut CommandContext<Self>,
//!     ) -> Result<Reply<proto::Value>, Failure> {
//!         Ok(proto::Value { value: self.value }.into())
//!     }
//! }
//!
//! /// The registration, shared by `main` and the tests.
//! fn counter() -> EventSourced<Counter> {
//!     proto::counter::entity().snapshot_every(100)
//! }
//!
//! // In main:
//! // cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
//! //     .register(counter())?
//! //     .serve_from_env()
//! //     .await
//!
//! // In a test:
//! use cloudstate::Code;
//! use cloudstate::testkit::EventSourcedTestKit;
//! use proto::counter::{get_value, increment};
//!
//! let mut kit = EventSourcedTestKit::new(counter(), "c1");
//! let outcome = kit.command(increment(proto::Increment { counter_id: "c1".into(), by: 3 })).unwrap();
//! assert_eq!(outcome.events(), [CounterEvent::Incremented(proto::Incremented { by: 3 })]);
//!
//! let outcome = kit.command(get_value(proto::GetValue { counter_id: "c1".into() })).unwrap();
//! assert_eq!(outcome.reply::<proto::Value>().unwrap().value, 3);
//!
//! let outcome = kit.command(increment(proto::Increment { counter_id: "c1".into(), by: 0 })).unwrap();
//! assert_eq!(outcome.failure().unwrap().code(), Some(Code::InvalidArgument));
//! assert!(outcome.events().is_empty());
//! ```
//!
//! # A value entity
//!
//! `proto/stock.proto`: `service Inventory { rpc Reserve(Reserve) returns (Stock); }`.
//!
//! ```
//! use cloudstate::{Failure, Reply, ValueContext, ValueEntityService};
//!
//! pub mod proto {
//!     cloudstate::include_protos!("example.stock");
//! }
//!
//! // The stored state is a protobuf message; `self` is its current value (the default when
//! // nothing is stored).
//! impl proto::Inventory for proto::Stock {
//!     fn reserve(
//!         &self,
//!         request: proto::Reserve,
//!         ctx: &mut ValueContext<Self>,
//!     ) -> Result<Reply<proto::Stock>, Failure> {
//!         if request.quantity > self.available {
//!             return Err(Failure::failed_precondition("not enough stock"));
//!         }
//!         let stock = proto::Stock { available: self.available - request.quantity };
//!         ctx.update_state(stock.clone());
//!         Ok(stock.into())
//!     }
//! }
//!
//! fn stock() -> ValueEntityService<proto::Stock> {
//!     proto::inventory::entity().persistence_id("stock")
//! }
//!
//! // In a test:
//! use cloudstate::Code;
//! use cloudstate::testkit::{StateAction, ValueEntityTestKit};
//! use proto::inventory::reserve;
//!
//! let mut kit = ValueEntityTestKit::with_state(stock(), "p1", proto::Stock { available: 5 }).unwrap();
//! let request = proto::Reserve { product_id: "p1".into(), quantity: 2 };
//! let outcome = kit.command(reserve(request.clone())).unwrap();
//! assert_eq!(outcome.state_action(), Some(&StateAction::Update(proto::Stock { available: 3 })));
//! assert_eq!(kit.stored(), Some(&proto::Stock { available: 3 }));
//!
//! let outcome = kit.command(reserve(proto::Reserve { quantity: 9, ..request })).unwrap();
//! assert_eq!(outcome.failure().unwrap().code(), Some(Code::FailedPrecondition));
//! assert!(outcome.state_action().is_none());
//! ```
//!
//! # A CRDT entity
//!
//! Presence: a user is online while one of their `Connect` calls is open on some node.
//! `proto/chat.proto`: `service Presence { rpc Connect(User) returns (stream
//! google.protobuf.Empty); rpc Monitor(User) returns (stream OnlineStatus); }`.
//!
//! ```
//! use cloudstate::crdt::{Vote, Votes};
//! use cloudstate::{CrdtEntityService, Failure, Reply, StreamedContext};
//!
//! pub mod proto {
//!     cloudstate::include_protos!("example.chat");
//! }
//!
//! /// What this node knows locally: how many of the user's connections are open here. The
//! /// entity's replicated state is a `Vote`, reached through the context.
//! #[derive(Default)]
//! pub struct Presence {
//!     connections: u32,
//! }
//!
//! impl proto::Presence for Presence {
//!     fn connect(
//!         &mut self,
//!         _: proto::User,
//!         ctx: &mut StreamedContext<Self, ()>,
//!     ) -> Result<Reply<()>, Failure> {
//!         ctx.state_or_create::<Vote>()?.vote(true);
//!         self.connections += 1;
//!         // Keeps the stream open; runs when the client goes away.
//!         ctx.on_cancel(|presence: &mut Presence, ctx| {
//!             presence.connections -= 1;
//!             if presence.connections == 0 {
//!                 if let Ok(Some(mut vote)) = ctx.state::<Vote>() {
//!                     vote.vote(false);
//!                 }
//!             }
//!         });
//!         Ok(Reply::NoReply)
//!     }
//!
//!     fn monitor(
//!         &mut self,
//!         _: proto::User,
//!         ctx: &mut StreamedContext<Self, proto::OnlineStatus>,
//!     ) -> Result<Reply<proto::OnlineStatus>, Failure> {
//!         let online = |votes: Option<Votes>| votes.is_some_and(|v| v.at_least_one());
//!         let mut last = online(ctx.value::<Vote>()?);
//!         // Runs after every change of the state (here, or replicated from elsewhere).
//!         ctx.on_change(move |_: &mut Presence, change| {
//!             let now = online(change.value::<Vote>()?);
//!             if now == last {
//!                 return Ok(Reply::NoReply);
//!             }
//!             last = now;
//!             Ok(proto::OnlineStatus { online: now }.into())
//!         });
//!         Ok(proto::OnlineStatus { online: last }.into())
//!     }
//! }
//!
//! fn presence() -> CrdtEntityService<Presence> {
//!     proto::presence::entity().persistence_id("presence")
//! }
//!
//! // In a test:
//! use cloudstate::testkit::{CrdtTestKit, deltas};
//! use proto::presence::{connect, monitor};
//!
//! let mut kit = CrdtTestKit::new(presence(), "ann");
//! let ann = || proto::User { user_id: "ann".into() };
//! let watching = kit.streamed_command(monitor(ann())).unwrap();
//! assert!(!watching.reply::<proto::OnlineStatus>().unwrap().online);
//!
//! let connected = kit.streamed_command(connect(ann())).unwrap();
//! assert!(connected.streamed());
//! assert_eq!(connected.delta(), Some(&deltas::vote(true, 0, 0)));
//! let pushed = &connected.streamed_messages()[0];
//! assert!(pushed.reply::<proto::OnlineStatus>().unwrap().online);
//!
//! let disconnected = kit.cancel(connected.command_id()).unwrap();
//! assert_eq!(disconnected.delta(), Some(&deltas::vote(false, 0, 0)));
//! assert_eq!(kit.stream(watching.command_id()).len(), 2);
//!
//! // Another node's vote arrives as a delta.
//! let pushed = kit.delta(deltas::vote(false, 1, 2)).unwrap();
//! assert!(pushed[0].reply::<proto::OnlineStatus>().unwrap().online);
//! ```
//!
//! # An action
//!
//! `proto/shop.proto` (package `example.shop`, importing the inventory's `example.stock`):
//! `service Shop { rpc Greet(Text) returns (Text); rpc Order(example.stock.Reserve) returns
//! (example.stock.Stock); rpc Audit(example.stock.Reserve) returns (Text); rpc Shout(stream
//! Text) returns (stream Text); }`.
//!
//! ```
//! use cloudstate::{ActionContext, ActionService, Failure, Reply, ReplyStream, RequestStream};
//! use tokio_stream::StreamExt;
//!
//! // One module per package, nested as the packages are.
//! pub mod example {
//!     pub mod shop {
//!         cloudstate::include_protos!("example.shop");
//!     }
//!     pub mod stock {
//!         cloudstate::include_protos!("example.stock");
//!     }
//! }
//! use example::{shop, stock};
//!
//! /// Shared by every call: a good place for clients of other services.
//! pub struct Shop {
//!     greeting: String,
//! }
//!
//! impl shop::Shop for Shop {
//!     async fn greet(
//!         &self,
//!         name: shop::Text,
//!         ctx: &mut ActionContext,
//!     ) -> Result<Reply<shop::Text>, Failure> {
//!         let language = ctx.metadata().get("accept-language").unwrap_or("en");
//!         Ok(shop::Text { text: format!("{} {} ({language})", self.greeting, name.text) }.into())
//!     }
//!
//!     /// Has the proxy call `Audit` first, then forwards to the inventory.
//!     async fn order(
//!         &self,
//!         order: stock::Reserve,
//!         ctx: &mut ActionContext,
//!     ) -> Result<Reply<stock::Stock>, Failure> {
//!         ctx.side_effect(shop::shop::audit(order.clone()).synchronous());
//!         Ok(Reply::forward(stock::inventory::reserve(order)))
//!     }
//!
//!     async fn audit(
//!         &self,
//!         order: stock::Reserve,
//!         _: &mut ActionContext,
//!     ) -> Result<Reply<shop::Text>, Failure> {
//!         Ok(shop::Text { text: format!("{} x {}", order.quantity, order.product_id) }.into())
//!     }
//!
//!     /// Bidirectional: one upper-cased text per text received.
//!     async fn shout(
//!         &self,
//!         texts: RequestStream<shop::Text>,
//!         _: &mut ActionContext,
//!     ) -> Result<ReplyStream<shop::Text>, Failure> {
//!         let shouted = texts.map(|t| Ok::<_, Failure>(shop::Text { text: t.text.to_uppercase() }));
//!         Ok(ReplyStream::new(shouted))
//!     }
//! }
//!
//! fn action() -> ActionService<Shop> {
//!     shop::shop::action(Shop { greeting: "Hello".into() })
//! }
//!
//! // In a test:
//! use cloudstate::testkit::ActionTestKit;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let kit = ActionTestKit::new(action()).with_metadata("accept-language", "fr");
//! let hello = kit.unary(shop::shop::greet(shop::Text { text: "Ann".into() })).await.unwrap();
//! assert_eq!(hello.reply::<shop::Text>().unwrap().text, "Hello Ann (fr)");
//!
//! let order = stock::Reserve { product_id: "p1".into(), quantity: 2 };
//! let ordered = kit.unary(shop::shop::order(order)).await.unwrap();
//! assert_eq!(ordered.forward().unwrap().method, "Reserve");
//! assert_eq!(ordered.side_effects()[0].method, "Audit");
//!
//! let texts = ["a", "b"].map(|t| shop::Text { text: t.into() });
//! let shouted = kit.streamed(shop::shop::shout, texts).await.unwrap();
//! assert_eq!(shouted[1].reply::<shop::Text>().unwrap().text, "B");
//! # });
//! ```
//!
//! # Mistakes are compile errors
//!
//! A misspelt handler is not a method of the service's trait:
//!
//! ```compile_fail,E0407
//! # pub mod proto { cloudstate::include_protos!("example.stock"); }
//! # use cloudstate::{Failure, Reply, ValueContext};
//! impl proto::Inventory for proto::Stock {
//!     fn reserve(&self, _: proto::Reserve, _: &mut ValueContext<Self>) -> Result<Reply<proto::Stock>, Failure> {
//!         Ok(self.clone().into())
//!     }
//!     fn reserv(&self, _: proto::Reserve, _: &mut ValueContext<Self>) -> Result<Reply<proto::Stock>, Failure> {
//!         Ok(self.clone().into())
//!     }
//! }
//! ```
//!
//! A handler taking or returning another type than its method's does not implement it:
//!
//! ```compile_fail,E0053
//! # pub mod proto { cloudstate::include_protos!("example.stock"); }
//! # use cloudstate::{Failure, Reply, ValueContext};
//! impl proto::Inventory for proto::Stock {
//!     fn reserve(&self, _: proto::Stock, _: &mut ValueContext<Self>) -> Result<Reply<proto::Stock>, Failure> {
//!         Ok(self.clone().into())
//!     }
//! }
//! ```
//!
//! A missing handler leaves the trait unimplemented:
//!
//! ```compile_fail,E0046
//! # pub mod proto { cloudstate::include_protos!("example.counter"); }
//! # use cloudstate::{CommandContext, Failure, Reply};
//! # #[derive(Default)] struct Counter;
//! # cloudstate::events! { enum Event { Incremented(proto::Incremented) } }
//! # impl cloudstate::EventSourcedEntity for Counter {
//! #     type Event = Event;
//! #     type Snapshot = ();
//! #     fn apply(&mut self, _: &Event) {}
//! # }
//! impl proto::Counter for Counter {
//!     fn increment(&self, _: proto::Increment, _: &mut CommandContext<Self>) -> Result<Reply<proto::Value>, Failure> {
//!         Ok(proto::Value { value: 1 }.into())
//!     }
//!     // No get_value.
//! }
//! ```
//!
//! A forward must go to a method with the same reply type (`Reserve` replies a `Stock`):
//!
//! ```compile_fail,E0308
//! # pub mod proto { cloudstate::include_protos!("example.counter"); }
//! # pub mod stock { cloudstate::include_protos!("example.stock"); }
//! # fn forward() -> cloudstate::Reply<proto::Value> {
//! let reserve = stock::Reserve { product_id: "p1".into(), quantity: 1 };
//! cloudstate::Reply::forward(stock::inventory::reserve(reserve))
//! # }
//! ```
//!
//! # Wire facts
//!
//! - Replies are `Any{type_url: "type.googleapis.com/<full output type>"}`; a handler
//!   returning `()` replies `google.protobuf.Empty`.
//! - Events, snapshots and value entity states are `Any`s typed the same way; replay and
//!   `init` decode them by type URL.
//! - A command for a method without a handler, with a payload of another type than the
//!   handler's input, or that does not decode, fails that command (`UNIMPLEMENTED` /
//!   `INVALID_ARGUMENT`); a panicking handler fails it too. An entity's stream carries on.
//! - Entity protocol violations (no `init` first, a second `init`, an event after a command
//!   or that does not decode, a stored value of another type, a CRDT delta that does not
//!   apply, an unknown service) end the stream: a `failure` message, then the gRPC status
//!   `FAILED_PRECONDITION`.
//! - CRDT entities: set elements, map keys and register values are `Any`s, primitives as
//!   `p.cloudstate.io/<type>` (field 1, the default value as zero bytes), messages as
//!   `type.googleapis.com/<name>` ([`crdt::ToAny`]). A command's reply carries the net delta
//!   of its changes (`state_action.update`, with its write consistency) or `delete`; streamed
//!   messages of other streams follow the reply. A `CrdtStreamCancelledResponse` answers every
//!   `stream_cancelled`, with the on-cancel callback's change, if any. Deltas from the proxy
//!   are applied, never echoed.
//! - Actions: a call of an unknown service, of a method of another shape than the call's, or
//!   whose first streamed message carries a payload ends with the gRPC status
//!   `FAILED_PRECONDITION`. A response without a reply (`Reply::NoReply`) has no `response`;
//!   an action's failure keeps its side effects; a failure has `command_id` 0. For
//!   client-streamed calls only the first message's metadata is read.

#![warn(missing_docs)]

mod action;
mod command;
pub mod crdt;
mod error;
mod eventsourced;
mod metadata;
mod panic;
mod reply;
mod server;
mod service;
mod stream;
#[cfg(test)]
mod test_crdt;
#[cfg(test)]
mod test_entity;
pub mod testkit;
mod valueentity;

pub use action::{
    Action, ActionContext, ActionReply, ActionService, ReplySender, ReplyStream, RequestStream,
};
pub use cloudstate_protocol as protocol;
pub use crdt::{
    ChangeContext, CrdtContext, CrdtEntity, CrdtEntityService, StreamedContext, WriteConsistency,
};
pub use error::Error;
pub use eventsourced::{CommandContext, Event, EventSourced, EventSourcedEntity};
pub use metadata::Metadata;
pub use reply::{Call, Failure, Forward, IntoReply, Reply, SideEffect};
pub use server::{SUPPORT_LIBRARY_NAME, Server, address_from_env};
pub use service::Service;
/// gRPC status codes, for [`Failure::with_code`].
pub use tonic::Code;
pub use valueentity::{ValueContext, ValueEntity, ValueEntityService};

/// Includes the code `cloudstate-build` generated for one protobuf package (messages and
/// clients), e.g. `cloudstate::include_protos!("com.example.shoppingcart");`.
///
/// Packages nested in another (`com.example.shoppingcart.persistence`) go in a child module
/// of the same name, so that generated references between them resolve.
#[macro_export]
macro_rules! include_protos {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// The encoded `FileDescriptorSet` `cloudstate-build` wrote (the user's protos and all their
/// imports, custom options intact), as a `&'static [u8]` for [`Server::new`].
#[macro_export]
macro_rules! include_descriptor_set {
    () => {
        include_bytes!(concat!(env!("OUT_DIR"), "/cloudstate_descriptor_set.bin"))
    };
}

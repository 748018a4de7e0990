//! The CRDT entity testkit.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudstate_protocol::crdt::{
    CrdtDelete, CrdtDelta, CrdtInit, CrdtStateAction, CrdtStreamedMessage, crdt_state_action,
    crdt_stream_in, crdt_stream_out,
};
use cloudstate_protocol::{self as protocol, StreamCancelled};
use prost::{Message, Name};

use super::{ClientAction, StateAction, for_service};
use crate::crdt::session::CrdtSession;
use crate::crdt::{Crdt, CrdtEntity, CrdtEntityService, WriteConsistency};
use crate::{Call, Error, Failure, Forward, SideEffect};

/// One CRDT entity instance driven as the proxy would drive it, on one node: commands (plain and
/// streamed) with ids 1, 2, ..., deltas from elsewhere, cancelled streams and deletion. It keeps
/// the messages each open stream received.
pub struct CrdtTestKit<E: CrdtEntity> {
    entity: Arc<CrdtEntityService<E>>,
    entity_id: String,
    session: CrdtSession<E>,
    next_command_id: i64,
    streamed: BTreeMap<i64, Vec<StreamedMessage>>,
}

impl<E: CrdtEntity> CrdtTestKit<E> {
    /// A new entity `entity_id` without state.
    ///
    /// # Panics
    ///
    /// If the entity's `Default` panics.
    pub fn new(entity: CrdtEntityService<E>, entity_id: &str) -> Self {
        match Self::start(Arc::new(entity), entity_id, None) {
            Ok(kit) => kit,
            Err(error) => panic!("starting entity {entity_id}: {error}"),
        }
    }

    /// The entity `entity_id` whose state is `delta` (a full state, as the proxy sends it in
    /// `init`); see [`deltas`](super::deltas).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the delta is not a valid state or the entity's `Default` panics.
    pub fn with_state(
        entity: CrdtEntityService<E>,
        entity_id: &str,
        delta: CrdtDelta,
    ) -> Result<Self, Error> {
        Self::start(Arc::new(entity), entity_id, Some(delta))
    }

    /// A fresh instance of this entity started the way the proxy starts it after passivation:
    /// `init` carries the current state. Open streams are not carried over.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity's `Default` panics.
    pub fn restarted(&self) -> Result<Self, Error> {
        let state = self.session.state().map(|state| state.full_delta());
        Self::start(self.entity.clone(), &self.entity_id, state)
    }

    fn start(
        entity: Arc<CrdtEntityService<E>>,
        entity_id: &str,
        delta: Option<CrdtDelta>,
    ) -> Result<Self, Error> {
        let init = CrdtInit {
            service_name: entity.service_name().to_owned(),
            entity_id: entity_id.to_owned(),
            delta,
        };
        Ok(CrdtTestKit {
            session: CrdtSession::start(entity.clone(), init)?,
            entity,
            entity_id: entity_id.to_owned(),
            next_command_id: 1,
            streamed: BTreeMap::new(),
        })
    }

    /// Sends `call` (a generated call of one of the entity's methods, e.g.
    /// `proto::crdt_example::get_g_counter(request)`) as the proxy sends a unary call, and
    /// returns what the entity answered.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when `call` is for another service; [`Error::Protocol`]
    /// when the entity broke the protocol (the testkit's own check).
    pub fn command<Out>(&mut self, call: Call<Out>) -> Result<CrdtOutcome, Error> {
        self.send_command(call, false)
    }

    /// Sends `call` as a streamed command, as the proxy sends a server-streaming call. If the outcome is [`streamed`](CrdtOutcome::streamed), the stream
    /// stays open under the outcome's [`command_id`](CrdtOutcome::command_id): its messages
    /// collect in [`stream`](Self::stream) until it ends or is [`cancel`](Self::cancel)led.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn streamed_command<Out>(&mut self, call: Call<Out>) -> Result<CrdtOutcome, Error> {
        self.send_command(call, true)
    }

    fn send_command<Out>(&mut self, call: Call<Out>, streamed: bool) -> Result<CrdtOutcome, Error> {
        let (method, payload) = for_service(self.entity.service_name(), call)?;
        let id = self.next_command_id;
        self.next_command_id += 1;
        let command = protocol::Command {
            entity_id: self.entity_id.clone(),
            id,
            name: method.to_owned(),
            payload: Some(payload),
            streamed,
            metadata: None,
        };
        let mut messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Command(command)))?
            .into_iter();
        let Some(crdt_stream_out::Message::Reply(reply)) = messages.next() else {
            return Err(unexpected(
                "a command's answer does not start with its reply",
            ));
        };
        if reply.command_id != id {
            return Err(unexpected("a reply for another command"));
        }
        let (state_action, write_consistency) = decode_state_action(reply.state_action);
        if reply.streamed {
            self.streamed.insert(id, Vec::new());
        }
        Ok(CrdtOutcome {
            command_id: id,
            action: ClientAction::from_entity(reply.client_action),
            side_effects: from_proto(reply.side_effects),
            state_action,
            write_consistency,
            streamed: reply.streamed,
            streamed_messages: self.record(messages)?,
        })
    }

    /// Delivers `delta`, a change that happened elsewhere (see [`deltas`](super::deltas)), and
    /// returns the messages the open streams got for it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the delta does not apply to the entity's state.
    pub fn delta(&mut self, delta: CrdtDelta) -> Result<Vec<StreamedMessage>, Error> {
        let messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Delta(delta)))?;
        self.record(messages.into_iter())
    }

    /// Cancels streamed command `command_id`, as when its client goes away, and returns the
    /// entity's answer.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn cancel(&mut self, command_id: i64) -> Result<CancelOutcome, Error> {
        let cancelled = StreamCancelled {
            entity_id: self.entity_id.clone(),
            id: command_id,
        };
        self.streamed.remove(&command_id);
        let mut messages = self
            .session
            .handle(Some(crdt_stream_in::Message::StreamCancelled(cancelled)))?
            .into_iter();
        let Some(crdt_stream_out::Message::StreamCancelledResponse(response)) = messages.next()
        else {
            return Err(unexpected(
                "the answer to a cancellation does not start with its response",
            ));
        };
        let (state_action, write_consistency) = decode_state_action(response.state_action);
        Ok(CancelOutcome {
            side_effects: from_proto(response.side_effects),
            state_action,
            write_consistency,
            streamed_messages: self.record(messages)?,
        })
    }

    /// Deletes the entity, as the proxy does when it was deleted elsewhere: its state is gone
    /// and its streams end.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn delete(&mut self) -> Result<(), Error> {
        let messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Delete(CrdtDelete {})))?;
        self.streamed.clear();
        self.record(messages.into_iter()).map(drop)
    }

    /// The entity's state as a `T`'s plain value; `None` while it has none.
    ///
    /// # Errors
    ///
    /// A failure when the entity's CRDT is another type or does not decode as a `T`.
    pub fn value<T: Crdt>(&self) -> Result<Option<T::Value>, Failure> {
        self.session.state().map(T::value).transpose()
    }

    /// The ids of the streamed commands whose streams are open, in order.
    pub fn open_streams(&self) -> Vec<i64> {
        self.session.open_streams()
    }

    /// The messages streamed command `command_id` has sent since its reply (empty for a
    /// command that is not streamed; kept after the stream ends, until it is cancelled).
    pub fn stream(&self, command_id: i64) -> &[StreamedMessage] {
        self.streamed.get(&command_id).map_or(&[], Vec::as_slice)
    }

    /// Decodes streamed messages and adds them to their streams' logs.
    fn record(
        &mut self,
        messages: impl Iterator<Item = crdt_stream_out::Message>,
    ) -> Result<Vec<StreamedMessage>, Error> {
        messages
            .map(|message| match message {
                crdt_stream_out::Message::StreamedMessage(message) => {
                    let message = StreamedMessage::decode(message);
                    self.streamed
                        .entry(message.command_id)
                        .or_default()
                        .push(message.clone());
                    Ok(message)
                }
                _ => Err(unexpected("a message other than a streamed message")),
            })
            .collect()
    }
}

fn unexpected(what: &str) -> Error {
    Error::Protocol(format!("the entity sent {what}"))
}

fn from_proto(side_effects: Vec<protocol::SideEffect>) -> Vec<SideEffect> {
    side_effects
        .into_iter()
        .map(SideEffect::from_proto)
        .collect()
}

fn decode_state_action(
    action: Option<CrdtStateAction>,
) -> (Option<StateAction<CrdtDelta>>, WriteConsistency) {
    let Some(action) = action else {
        return (None, WriteConsistency::default());
    };
    let change = match action.action {
        Some(crdt_state_action::Action::Update(delta)) => Some(StateAction::Update(delta)),
        Some(crdt_state_action::Action::Delete(_)) => Some(StateAction::Delete),
        None => None,
    };
    (
        change,
        WriteConsistency::from_proto(action.write_consistency),
    )
}

/// Everything a CRDT entity answered to one command, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdtOutcome {
    command_id: i64,
    action: ClientAction,
    side_effects: Vec<SideEffect>,
    state_action: Option<StateAction<CrdtDelta>>,
    write_consistency: WriteConsistency,
    streamed: bool,
    streamed_messages: Vec<StreamedMessage>,
}

impl CrdtOutcome {
    /// The command's id (to [`cancel`](CrdtTestKit::cancel) its stream).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// What the client gets first ([`ClientAction::NoReply`] for a streamed command that
    /// replied nothing yet).
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The reply message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the command did not reply with an `M`.
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        self.action.reply()
    }

    /// The failure, if the command failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.action.failure()
    }

    /// The forward, if the command was forwarded.
    pub fn forward(&self) -> Option<&Forward> {
        self.action.forward()
    }

    /// The side effects the proxy runs, in order (none if the command failed).
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// The state change sent to the proxy: the net delta, or the deletion (none if the
    /// command failed or changed nothing).
    pub fn state_action(&self) -> Option<&StateAction<CrdtDelta>> {
        self.state_action.as_ref()
    }

    /// The net delta sent to the proxy, if any.
    pub fn delta(&self) -> Option<&CrdtDelta> {
        match &self.state_action {
            Some(StateAction::Update(delta)) => Some(delta),
            _ => None,
        }
    }

    /// The write consistency of the state change.
    pub fn write_consistency(&self) -> WriteConsistency {
        self.write_consistency
    }

    /// Whether the command is streamed and its stream stays open.
    pub fn streamed(&self) -> bool {
        self.streamed
    }

    /// The messages other open streams got because this command changed the state.
    pub fn streamed_messages(&self) -> &[StreamedMessage] {
        &self.streamed_messages
    }
}

/// What a CRDT entity answered to the cancellation of a streamed command, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOutcome {
    side_effects: Vec<SideEffect>,
    state_action: Option<StateAction<CrdtDelta>>,
    write_consistency: WriteConsistency,
    streamed_messages: Vec<StreamedMessage>,
}

impl CancelOutcome {
    /// The side effects the proxy runs.
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// The state change of the on-cancel callback, if any.
    pub fn state_action(&self) -> Option<&StateAction<CrdtDelta>> {
        self.state_action.as_ref()
    }

    /// The net delta of the on-cancel callback, if any.
    pub fn delta(&self) -> Option<&CrdtDelta> {
        match &self.state_action {
            Some(StateAction::Update(delta)) => Some(delta),
            _ => None,
        }
    }

    /// The write consistency of the state change.
    pub fn write_consistency(&self) -> WriteConsistency {
        self.write_consistency
    }

    /// The messages other open streams got because the state changed.
    pub fn streamed_messages(&self) -> &[StreamedMessage] {
        &self.streamed_messages
    }
}

/// A message on the stream of a streamed command, after its reply, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedMessage {
    command_id: i64,
    action: ClientAction,
    side_effects: Vec<SideEffect>,
    end_stream: bool,
}

impl StreamedMessage {
    fn decode(message: CrdtStreamedMessage) -> Self {
        StreamedMessage {
            command_id: message.command_id,
            action: ClientAction::from_entity(message.client_action),
            side_effects: from_proto(message.side_effects),
            end_stream: message.end_stream,
        }
    }

    /// The streamed command's id.
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// What the client gets ([`ClientAction::NoReply`] for a message with side effects or the
    /// end of the stream only).
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when this is not a message of type `M`.
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        self.action.reply()
    }

    /// The failure, if the stream failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.action.failure()
    }

    /// The side effects the proxy runs with this message.
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// Whether the stream ends with this message.
    pub fn end_stream(&self) -> bool {
        self.end_stream
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::crdt::{Clock, Votes};
    use crate::test_crdt::{CRDT_SERVICE, CrdtModel, crdt_model};
    use crate::test_entity::{Request, State, call};
    use crate::testkit::deltas::{
        flag, gcounter, gset, lww, lww_with_clock, ormap, orset, pncounter, vote,
    };

    fn kit() -> CrdtTestKit<CrdtModel> {
        CrdtTestKit::new(crdt_model(), "c1")
    }

    fn request(ops: &[&str]) -> Request {
        Request {
            id: "c1".into(),
            values: ops.iter().map(|op| (*op).to_owned()).collect(),
        }
    }

    /// Runs `Process` with `ops`: the state it replied and the delta it sent.
    fn process(kit: &mut CrdtTestKit<CrdtModel>, ops: &[&str]) -> (String, Option<CrdtDelta>) {
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(ops)))
            .unwrap();
        let state = outcome.reply::<State>().unwrap().value;
        (state, outcome.delta().cloned())
    }

    fn watch(kit: &mut CrdtTestKit<CrdtModel>, options: &[&str]) -> CrdtOutcome {
        kit.streamed_command(call(CRDT_SERVICE, "Watch", &request(options)))
            .unwrap()
    }

    fn replies(messages: &[StreamedMessage]) -> Vec<(i64, String)> {
        messages
            .iter()
            .map(|m| (m.command_id(), m.reply::<State>().unwrap().value))
            .collect()
    }

    fn s(text: &str) -> String {
        text.to_owned()
    }

    #[test]
    fn counters_send_their_net_change() {
        let mut kit = kit();
        assert_eq!(process(&mut kit, &[]), (s("none"), None));
        assert_eq!(
            process(&mut kit, &["gcounter+42"]),
            (s("42"), Some(gcounter(42)))
        );
        let three = ["gcounter+1", "gcounter+2", "gcounter+3"];
        assert_eq!(process(&mut kit, &three), (s("48"), Some(gcounter(6))));
        assert_eq!(process(&mut kit, &["gcounter+0"]), (s("48"), None));

        let mut kit = CrdtTestKit::new(crdt_model(), "c2");
        let changes = ["pncounter+1", "pncounter-2", "pncounter+3"];
        assert_eq!(process(&mut kit, &changes), (s("2"), Some(pncounter(2))));
        let nothing = ["pncounter+5", "pncounter-5"];
        assert_eq!(process(&mut kit, &nothing), (s("2"), None));
        // Creating a counter that stays at zero tells the proxy nothing.
        let mut kit = CrdtTestKit::new(crdt_model(), "c3");
        assert_eq!(process(&mut kit, &["pncounter+0"]), (s("0"), None));
    }

    #[test]
    fn deltas_from_the_proxy_are_applied_and_never_echoed() {
        let mut kit = CrdtTestKit::with_state(crdt_model(), "c1", gcounter(42)).unwrap();
        assert_eq!(
            process(&mut kit, &["gcounter+123"]),
            (s("165"), Some(gcounter(123)))
        );

        let mut kit = kit_with_deltas(&[gcounter(42)]);
        assert_eq!(
            process(&mut kit, &["gcounter+123"]),
            (s("165"), Some(gcounter(123)))
        );
        kit.delta(gcounter(2)).unwrap();
        kit.delta(gcounter(3)).unwrap();
        assert_eq!(process(&mut kit, &[]), (s("170"), None));

        let mut kit = kit_with_deltas(&[gset(&["a"])]);
        assert_eq!(
            process(&mut kit, &["gset+b", "gset+a"]),
            (s("{a,b}"), Some(gset(&["b"])))
        );
        assert_eq!(process(&mut kit, &["gset+b"]), (s("{a,b}"), None));
    }

    fn kit_with_deltas(deltas: &[CrdtDelta]) -> CrdtTestKit<CrdtModel> {
        let mut kit = kit();
        for delta in deltas {
            kit.delta(delta.clone()).unwrap();
        }
        kit
    }

    #[test]
    fn orset_deltas_follow_the_tck() {
        let mut kit = kit();
        let none: &[&str] = &[];
        assert_eq!(
            process(&mut kit, &["orset+a", "orset+b"]),
            (s("{a,b}"), Some(orset(false, none, &["a", "b"])))
        );
        assert_eq!(
            process(&mut kit, &["orset+b", "orset+c"]),
            (s("{a,b,c}"), Some(orset(false, none, &["c"])))
        );
        assert_eq!(
            process(&mut kit, &["orset+c", "orset+a"]),
            (s("{a,b,c}"), None)
        );
        assert_eq!(
            process(&mut kit, &["orset-b", "orset-d"]),
            (s("{a,c}"), Some(orset(false, &["b"], none)))
        );
        assert_eq!(
            process(&mut kit, &["orset-c", "orset-d", "orset+b", "orset+c"]),
            (s("{a,b,c}"), Some(orset(false, none, &["b"])))
        );
        assert_eq!(
            process(&mut kit, &["orset!"]),
            (s("{}"), Some(orset(true, none, none)))
        );
        assert_eq!(
            process(&mut kit, &["orset+a", "orset!", "orset+x"]),
            (s("{x}"), Some(orset(true, none, &["x"])))
        );

        let mut kit = kit_with_deltas(&[orset(false, none, &["x", "y"])]);
        assert_eq!(
            process(&mut kit, &["orset-x", "orset+z"]),
            (s("{y,z}"), Some(orset(false, &["x"], &["z"])))
        );
        kit.delta(orset(true, none, &["p", "q"])).unwrap();
        assert_eq!(
            process(&mut kit, &["orset+x", "orset+y", "orset-x"]),
            (s("{p,q,y}"), Some(orset(false, none, &["y"])))
        );
        kit.delta(orset(false, &["p"], &["a", "b", "c"])).unwrap();
        assert_eq!(
            process(&mut kit, &["orset!", "orset+abc"]),
            (s("{abc}"), Some(orset(true, none, &["abc"])))
        );
    }

    #[test]
    fn lww_writes_carry_their_clock_and_are_always_sent() {
        let mut kit = kit();
        assert_eq!(process(&mut kit, &["lww="]), (s(""), Some(lww(""))));
        assert_eq!(
            process(&mut kit, &["lww=one"]),
            (s("one"), Some(lww("one")))
        );
        kit.delta(lww("B")).unwrap();
        assert_eq!(process(&mut kit, &[]), (s("B"), None));

        let mut kit = CrdtTestKit::new(crdt_model(), "c2");
        assert_eq!(
            process(&mut kit, &["lww=A@reverse"]),
            (s("A"), Some(lww_with_clock("A", Clock::Reverse)))
        );
        assert_eq!(
            process(&mut kit, &["lww=A@custom:123"]),
            (s("A"), Some(lww_with_clock("A", Clock::Custom(123))))
        );
        assert_eq!(
            process(&mut kit, &["lww=B", "lww=A@auto:456"]),
            (
                s("A"),
                Some(lww_with_clock("A", Clock::CustomAutoIncrement(456)))
            )
        );
        assert_eq!(process(&mut kit, &["lww=A"]), (s("A"), Some(lww("A"))));
    }

    #[test]
    fn flags_switch_on_once() {
        let mut kit = kit_with_deltas(&[flag(false)]);
        assert_eq!(process(&mut kit, &[]), (s("off"), None));
        assert_eq!(process(&mut kit, &["flag"]), (s("on"), Some(flag(true))));
        assert_eq!(process(&mut kit, &["flag"]), (s("on"), None));
        kit.delta(flag(true)).unwrap();
        // A flag the proxy reports off stays on.
        kit.delta(flag(false)).unwrap();
        assert_eq!(process(&mut kit, &[]), (s("on"), None));
        assert_eq!(kit.value::<crate::crdt::Flag>(), Ok(Some(true)));
    }

    #[test]
    fn votes_count_our_vote_and_send_only_it() {
        let mut kit = kit();
        assert_eq!(
            process(&mut kit, &["vote:y"]),
            (s("y/1/1"), Some(vote(true, 0, 0)))
        );
        assert_eq!(process(&mut kit, &["vote:y"]), (s("y/1/1"), None));
        assert_eq!(
            process(&mut kit, &["vote:n"]),
            (s("n/0/1"), Some(vote(false, 0, 0)))
        );

        let mut kit = kit_with_deltas(&[vote(false, 3, 5)]);
        assert_eq!(
            process(&mut kit, &["vote:y"]),
            (s("y/4/5"), Some(vote(true, 0, 0)))
        );
        kit.delta(vote(true, 5, 7)).unwrap();
        kit.delta(vote(true, 4, 6)).unwrap();
        assert_eq!(
            process(&mut kit, &["vote:n"]),
            (s("n/3/6"), Some(vote(false, 0, 0)))
        );
        assert_eq!(
            kit.value::<crate::crdt::Vote>(),
            Ok(Some(Votes {
                self_vote: false,
                votes_for: 3,
                total_voters: 6
            }))
        );
    }

    #[test]
    fn ormap_deltas_follow_the_tck() {
        let mut kit = kit();
        let none: &[&str] = &[];
        let added = |entries: &[(&str, CrdtDelta)]| ormap(false, none, &[], entries);
        let updated = |entries: &[(&str, CrdtDelta)]| ormap(false, none, entries, &[]);
        assert_eq!(
            process(
                &mut kit,
                &["map:PNCounter-1:pncounter+0", "map:ORSet-1:orset!"]
            ),
            (
                s("{ORSet-1={},PNCounter-1=0}"),
                Some(added(&[
                    ("ORSet-1", orset(false, none, none)),
                    ("PNCounter-1", pncounter(0))
                ]))
            )
        );
        assert_eq!(
            process(
                &mut kit,
                &["map:ORSet-1:orset!", "map:LWWRegister-1:lww=zero"]
            ),
            (
                s("{LWWRegister-1=zero,ORSet-1={},PNCounter-1=0}"),
                Some(added(&[("LWWRegister-1", lww("zero"))]))
            )
        );
        assert_eq!(
            process(
                &mut kit,
                &["map:PNCounter-1:pncounter+42", "map:LWWRegister-1:lww=one"]
            ),
            (
                s("{LWWRegister-1=one,ORSet-1={},PNCounter-1=42}"),
                Some(updated(&[
                    ("LWWRegister-1", lww("one")),
                    ("PNCounter-1", pncounter(42))
                ]))
            )
        );
        let (_, delta) = process(
            &mut kit,
            &[
                "map:ORSet-1:orset+a",
                "map:ORSet-1:orset+b",
                "map:ORSet-1:orset+c",
            ],
        );
        assert_eq!(
            delta,
            Some(updated(&[(
                "ORSet-1",
                orset(false, none, &["a", "b", "c"])
            )]))
        );
        assert_eq!(
            process(&mut kit, &["map-ORSet-1"]),
            (
                s("{LWWRegister-1=one,PNCounter-1=42}"),
                Some(ormap(false, &["ORSet-1"], &[], &[]))
            )
        );
        assert_eq!(
            process(&mut kit, &["map-LWWRegister-1", "map:Flag-1:flag"]),
            (
                s("{Flag-1=on,PNCounter-1=42}"),
                Some(ormap(
                    false,
                    &["LWWRegister-1"],
                    &[],
                    &[("Flag-1", flag(true))]
                ))
            )
        );
        assert_eq!(
            process(&mut kit, &["map!"]),
            (s("{}"), Some(ormap(true, none, &[], &[])))
        );
        assert_eq!(
            process(
                &mut kit,
                &[
                    "map:PNCounter-2:pncounter+0",
                    "map!",
                    "map:GCounter-1:gcounter+123"
                ]
            ),
            (
                s("{GCounter-1=123}"),
                Some(ormap(true, none, &[], &[("GCounter-1", gcounter(123))]))
            )
        );
        // Removed and added again in one command: removed, and added with the new value.
        assert_eq!(
            process(&mut kit, &["map-GCounter-1", "map:GCounter-1:gcounter+5"]),
            (
                s("{GCounter-1=5}"),
                Some(ormap(
                    false,
                    &["GCounter-1"],
                    &[],
                    &[("GCounter-1", gcounter(5))]
                ))
            )
        );
        // Removing a missing key changes nothing.
        assert_eq!(
            process(&mut kit, &["map-nope"]),
            (s("{GCounter-1=5}"), None)
        );
    }

    #[test]
    fn nested_maps_mix_local_and_replicated_changes() {
        let mut kit = kit();
        let none: &[&str] = &[];
        process(&mut kit, &["map:PNCounter-1:pncounter+0"]);
        kit.delta(ormap(
            false,
            &["PNCounter-1"],
            &[],
            &[(
                "ORMap-1",
                ormap(false, none, &[], &[("PNCounter-1", pncounter(123))]),
            )],
        ))
        .unwrap();
        kit.delta(ormap(
            false,
            none,
            &[(
                "ORMap-1",
                ormap(false, none, &[], &[("LWWRegister-1", lww("ABC"))]),
            )],
            &[],
        ))
        .unwrap();
        assert_eq!(
            process(&mut kit, &["map:ORMap-1:map:PNCounter-1:pncounter-456"]),
            (
                s("{ORMap-1={LWWRegister-1=ABC,PNCounter-1=-333}}"),
                Some(ormap(
                    false,
                    none,
                    &[(
                        "ORMap-1",
                        ormap(false, none, &[("PNCounter-1", pncounter(-456))], &[])
                    )],
                    &[]
                ))
            )
        );
        // A register written with its value again, one level down, still goes with its clock.
        assert_eq!(
            process(
                &mut kit,
                &["map:ORMap-1:map:LWWRegister-1:lww=ABC@custom:7"]
            )
            .1,
            Some(ormap(
                false,
                none,
                &[(
                    "ORMap-1",
                    ormap(
                        false,
                        none,
                        &[("LWWRegister-1", lww_with_clock("ABC", Clock::Custom(7)))],
                        &[]
                    )
                )],
                &[]
            ))
        );
        // Cleared one level down.
        assert_eq!(
            process(
                &mut kit,
                &["map:ORMap-1:map!", "map:ORMap-1:map:Flag-1:flag"]
            )
            .1,
            Some(ormap(
                false,
                none,
                &[("ORMap-1", ormap(true, none, &[], &[("Flag-1", flag(true))]))],
                &[]
            ))
        );
        let restarted = kit.restarted().unwrap();
        assert_eq!(
            crate::test_crdt::render(restarted.session.state()),
            "{ORMap-1={Flag-1=on}}"
        );
    }

    #[test]
    fn delete_failure_effects_forward_and_consistency() {
        let mut kit = kit();
        let outcome = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["gset+x", "majority"]),
            ))
            .unwrap();
        assert_eq!(outcome.write_consistency(), WriteConsistency::Majority);
        assert_eq!(outcome.delta(), Some(&gset(&["x"])));

        // A failure discards the state change and the side effects.
        let failed = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["gset+y", "effect:e", "fail"]),
            ))
            .unwrap();
        assert_eq!(
            failed.failure().map(Failure::description),
            Some("expected failure")
        );
        assert_eq!(
            failed.failure().and_then(Failure::code),
            Some(Code::Aborted)
        );
        assert_eq!(
            (failed.state_action(), failed.side_effects()),
            (None, &[][..])
        );
        assert_eq!(process(&mut kit, &[]), (s("{x}"), None));

        let panicked = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["gset+y", "panic"]),
            ))
            .unwrap();
        assert!(
            panicked
                .failure()
                .unwrap()
                .description()
                .contains("handler bug")
        );
        assert_eq!(process(&mut kit, &[]), (s("{x}"), None));

        let effects = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["effect:a", "sync:b", "all"]),
            ))
            .unwrap();
        let targets: Vec<_> = effects
            .side_effects()
            .iter()
            .map(|e| (e.payload.clone(), e.synchronous))
            .collect();
        assert_eq!(targets.len(), 2);
        assert!(targets[1].1 && !targets[0].1);
        // Nothing changed: no state action, so no write consistency either.
        assert_eq!(effects.state_action(), None);

        let forwarded = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["gset+z", "forward:X"]),
            ))
            .unwrap();
        assert_eq!(forwarded.forward().map(|f| f.method.as_str()), Some("Call"));
        assert_eq!(forwarded.delta(), Some(&gset(&["z"])));

        // Delete wins over the changes of the same command.
        let deleted = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["gset+w", "delete", "all"]),
            ))
            .unwrap();
        assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
        assert_eq!(deleted.write_consistency(), WriteConsistency::All);
        assert_eq!(process(&mut kit, &[]), (s("none"), None));
        // The entity may be created again, of another type.
        assert_eq!(process(&mut kit, &["flag"]), (s("on"), Some(flag(true))));
    }

    #[test]
    fn reading_another_type_is_a_failure() {
        let mut kit = kit();
        process(&mut kit, &["gcounter+1"]);
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["pncounter+1"])))
            .unwrap();
        let failure = outcome.failure().unwrap();
        assert_eq!(
            failure.description(),
            "the entity's state holds a GCounter where a PNCounter was expected"
        );
        assert_eq!(failure.code(), Some(Code::FailedPrecondition));
        assert_eq!(process(&mut kit, &[]), (s("1"), None));

        let mut kit = kit_with_deltas(&[ormap::<str>(false, &[], &[], &[("k", flag(true))])]);
        let outcome = kit
            .command(call(
                CRDT_SERVICE,
                "Process",
                &request(&["map:k:gcounter+1"]),
            ))
            .unwrap();
        assert_eq!(
            outcome.failure().map(Failure::description),
            Some("the entity's state holds a Flag where a GCounter was expected")
        );
        assert_eq!(
            kit.value::<crate::crdt::PnCounter>().unwrap_err().code(),
            Some(Code::FailedPrecondition)
        );
        type Map = crate::crdt::OrMap<'static, String, crate::crdt::Flag<'static>>;
        assert_eq!(kit.value::<Map>(), Ok(Some(vec![(s("k"), true)])));
    }

    #[test]
    fn unknown_commands_and_bad_payloads_fail_the_command() {
        let mut kit = kit();
        let unknown = kit
            .command(call(CRDT_SERVICE, "Nope", &request(&[])))
            .unwrap();
        assert_eq!(
            unknown.failure().map(Failure::description),
            Some("Unknown command Nope on service test.model.CrdtModel")
        );
        let bad = kit
            .command(call(CRDT_SERVICE, "Process", &State::default()))
            .unwrap();
        assert_eq!(
            bad.failure().and_then(Failure::code),
            Some(Code::InvalidArgument)
        );
        assert_eq!(process(&mut kit, &["gcounter+1"]).0, "1");
    }

    #[test]
    fn streams_get_a_message_per_change_after_the_reply() {
        let mut kit = kit();
        let stream = watch(&mut kit, &[]);
        assert!(stream.streamed());
        assert_eq!(stream.reply::<State>().unwrap().value, "none");
        assert_eq!(kit.open_streams(), [1]);

        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["gcounter+1"])))
            .unwrap();
        assert_eq!(outcome.delta(), Some(&gcounter(1)));
        assert_eq!(replies(outcome.streamed_messages()), [(1, s("1"))]);
        // A command that changes nothing wakes no stream.
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&[])))
            .unwrap();
        assert!(outcome.streamed_messages().is_empty());
        // A delta from the proxy does.
        assert_eq!(replies(&kit.delta(gcounter(2)).unwrap()), [(1, s("3"))]);
        assert_eq!(replies(kit.stream(1)), [(1, s("1")), (1, s("3"))]);

        // A second stream: its own change does not wake it, the others' do.
        let second = watch(&mut kit, &["initial:gcounter+4", "count"]);
        assert_eq!(second.reply::<State>().unwrap().value, "7");
        assert_eq!(replies(second.streamed_messages()), [(1, s("7"))]);
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["gcounter+1"])))
            .unwrap();
        assert_eq!(
            replies(outcome.streamed_messages()),
            [(1, s("8")), (4, s("8#5"))]
        );
    }

    #[test]
    fn streams_end_at_a_state_or_a_failure() {
        let mut kit = kit();
        let stream = watch(&mut kit, &["end:3"]);
        process(&mut kit, &["gcounter+1"]);
        process(&mut kit, &["gcounter+2"]);
        let last = kit.stream(stream.command_id()).last().unwrap().clone();
        assert_eq!(last.reply::<State>().unwrap().value, "3");
        assert!(last.end_stream());
        assert!(kit.open_streams().is_empty());
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["gcounter+3"])))
            .unwrap();
        assert!(outcome.streamed_messages().is_empty());

        let failing = watch(&mut kit, &["fail:7"]);
        let panicking = watch(&mut kit, &["panic:7"]);
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["gcounter+1"])))
            .unwrap();
        let messages = outcome.streamed_messages();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0].failure().map(Failure::description),
            Some("failed at 7")
        );
        assert_eq!(messages[0].command_id(), failing.command_id());
        assert!(
            messages[1]
                .failure()
                .unwrap()
                .description()
                .contains("on change panics at 7")
        );
        assert_eq!(messages[1].command_id(), panicking.command_id());
        assert!(messages.iter().all(StreamedMessage::end_stream));
        assert!(kit.open_streams().is_empty());
    }

    #[test]
    fn cancelling_runs_the_on_cancel_callback() {
        let mut kit = kit();
        process(&mut kit, &["pncounter+10"]);
        let observer = watch(&mut kit, &[]);
        let stream = watch(&mut kit, &["cancel:pncounter-42", "empty"]);
        assert!(stream.streamed());
        assert_eq!(stream.action(), &ClientAction::NoReply);
        assert_eq!(kit.open_streams(), [2, 3]);

        let cancelled = kit.cancel(stream.command_id()).unwrap();
        assert_eq!(cancelled.delta(), Some(&pncounter(-42)));
        assert_eq!(cancelled.side_effects().len(), 1);
        assert!(cancelled.side_effects()[0].synchronous);
        assert_eq!(
            replies(cancelled.streamed_messages()),
            [(observer.command_id(), s("-32"))]
        );
        assert_eq!(process(&mut kit, &[]).0, "-32");
        // The observer had no on-cancel callback; a stream that is not open: empty answers.
        let empty = kit.cancel(observer.command_id()).unwrap();
        assert_eq!(
            (empty.state_action(), empty.side_effects()),
            (None, &[][..])
        );
        assert!(kit.cancel(99).unwrap().streamed_messages().is_empty());
        assert!(kit.open_streams().is_empty());
    }

    #[test]
    fn streamed_messages_carry_side_effects() {
        let mut kit = kit();
        let stream = watch(&mut kit, &["effect:one"]);
        let outcome = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["gset+a"])))
            .unwrap();
        let message = &outcome.streamed_messages()[0];
        assert_eq!(message.command_id(), stream.command_id());
        assert_eq!(message.side_effects().len(), 1);
        assert_eq!(message.side_effects()[0].service, CRDT_SERVICE);
    }

    #[test]
    fn streams_need_a_callback_and_a_streamed_command() {
        let mut kit = kit();
        let quiet = watch(&mut kit, &["quiet", "initial:flag"]);
        assert!(!quiet.streamed());
        assert_eq!(quiet.reply::<State>().unwrap().value, "on");
        assert_eq!(quiet.delta(), Some(&flag(true)));
        // Not sent as streamed (a forward or side effect): the callbacks are ignored.
        let plain = kit
            .command(call(CRDT_SERVICE, "Watch", &request(&[])))
            .unwrap();
        assert!(!plain.streamed());
        assert!(kit.open_streams().is_empty());
        // A streamed command that fails opens no stream.
        let failed = watch(&mut kit, &["initial:gcounter+1"]);
        assert!(failed.failure().is_some() && !failed.streamed());
        assert!(kit.open_streams().is_empty());
    }

    #[test]
    fn deletes_end_the_streams() {
        let mut kit = kit();
        watch(&mut kit, &[]);
        process(&mut kit, &["gcounter+1"]);
        kit.delete().unwrap();
        assert!(kit.open_streams().is_empty());
        assert_eq!(kit.value::<GCounterValue>(), Ok(None));
        assert_eq!(process(&mut kit, &[]), (s("none"), None));

        watch(&mut kit, &[]);
        let deleted = kit
            .command(call(CRDT_SERVICE, "Process", &request(&["delete"])))
            .unwrap();
        assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
        assert!(deleted.streamed_messages().is_empty());
        assert!(kit.open_streams().is_empty());
    }

    type GCounterValue = crate::crdt::GCounter<'static>;

    #[test]
    fn protocol_violations_are_errors() {
        let mut kit = kit();
        process(&mut kit, &["gcounter+1"]);
        assert!(matches!(kit.delta(pncounter(1)), Err(Error::Protocol(_))));
        assert!(matches!(
            kit.delta(CrdtDelta::default()),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            kit.session
                .handle(Some(crdt_stream_in::Message::Init(CrdtInit::default()))),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(kit.session.handle(None), Err(Error::Protocol(_))));
        assert!(matches!(
            CrdtTestKit::with_state(crdt_model(), "c1", CrdtDelta::default()),
            Err(Error::Protocol(_))
        ));
    }
}

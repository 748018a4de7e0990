//! Message sizes: what the proxy will have to send the user function, measured before it is
//! sent or stored.
//!
//! One limit ([`crate::EngineConfig::max_message_size`]) bounds every message between client,
//! proxy and user function. Whatever the proxy stores it must later send back inside a protocol
//! message (an event in `EventSourcedEvent`, a snapshot in `EventSourcedInit`, a value in
//! `ValueEntityInit`); should that message exceed what the user function accepts, the entity
//! could never be recovered again. So the engine measures those messages *before* the write and
//! refuses the command instead.
//!
//! The sizes are computed from the lengths of the parts, without encoding anything: every field
//! of the messages involved has a number below 16 (a one-byte key), and numbers (sequence
//! numbers, command ids) are counted at their largest, ten bytes, so a computed size is never
//! below the encoded one (and at most a few bytes above).

use cloudstate_protocol::Any;
use prost::Message;
use prost::encoding::encoded_len_varint;

/// Bytes of a length-delimited field holding `len` bytes: key, length, content.
fn field(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Bytes of a numeric field at its largest: key and a ten-byte varint.
const NUMBER: usize = 11;

/// The stream message carrying an `Any` of `any_len` bytes next to one number: an event
/// (`EventSourcedEvent`), a snapshot in `EventSourcedSnapshot`.
fn numbered(any_len: usize) -> usize {
    NUMBER + field(any_len)
}

/// A command in its stream envelope (`Command` inside `EventSourcedStreamIn`,
/// `ValueEntityStreamIn` or `CrdtStreamIn`).
pub(crate) fn command_len(entity_id: &str, name: &str, type_url: &str, payload: usize) -> usize {
    let any = field(type_url.len()) + field(payload);
    // entity_id, id, name, payload, streamed
    let command = field(entity_id.len()) + NUMBER + field(name.len()) + field(any) + 2;
    field(command)
}

/// An action call's first message (`ActionCommand`).
pub(crate) fn action_command_len(
    service: &str,
    name: &str,
    type_url: &str,
    payload: usize,
    metadata: usize,
) -> usize {
    let any = field(type_url.len()) + field(payload);
    field(service.len()) + field(name.len()) + field(any) + field(metadata)
}

/// An event as it is replayed (`EventSourcedEvent` inside `EventSourcedStreamIn`).
pub(crate) fn event_len(payload: &Any) -> usize {
    field(numbered(payload.encoded_len()))
}

/// A snapshot as it is sent at recovery (`EventSourcedInit` inside `EventSourcedStreamIn`).
pub(crate) fn snapshot_init_len(service: &str, entity_id: &str, snapshot: &Any) -> usize {
    let init =
        field(service.len()) + field(entity_id.len()) + field(numbered(snapshot.encoded_len()));
    field(init)
}

/// A value as it is sent at recovery (`ValueEntityInit` inside `ValueEntityStreamIn`).
pub(crate) fn value_init_len(service: &str, entity_id: &str, value: &Any) -> usize {
    let state = field(value.encoded_len());
    let init = field(service.len()) + field(entity_id.len()) + field(state);
    field(init)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cloudstate_protocol::eventsourced::{
        EventSourcedEvent, EventSourcedInit, EventSourcedSnapshot, EventSourcedStreamIn,
        event_sourced_stream_in,
    };
    use cloudstate_protocol::valueentity::{
        ValueEntityInit, ValueEntityInitState, ValueEntityStreamIn, value_entity_stream_in,
    };
    use cloudstate_protocol::{Command, action::ActionCommand};
    use proptest::prelude::*;

    use super::*;

    fn payload_of(type_url: &str, len: usize) -> Any {
        Any {
            type_url: type_url.to_owned(),
            value: Bytes::from(vec![7u8; len]),
        }
    }

    fn es(message: event_sourced_stream_in::Message) -> usize {
        EventSourcedStreamIn {
            message: Some(message),
        }
        .encoded_len()
    }

    /// A computed size is an upper bound of the encoded one, at most a few bytes above it.
    fn close(computed: usize, encoded: usize) -> Result<(), TestCaseError> {
        prop_assert!(
            computed >= encoded,
            "computed {computed} < encoded {encoded}"
        );
        prop_assert!(
            computed - encoded <= 24,
            "computed {computed}, encoded {encoded}"
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn computed_sizes_bound_the_encoded_messages(
            len in prop_oneof![0usize..300, 16_000usize..17_000, 2_097_100usize..2_097_200],
            id in "[a-z]{0,200}",
            sequence in any::<i64>(),
        ) {
            let payload = payload_of("type.googleapis.com/x.Y", len);
            let command = Command {
                entity_id: id.clone(),
                id: sequence,
                name: "AddItem".into(),
                payload: Some(payload.clone()),
                streamed: true,
                metadata: None,
            };
            close(
                command_len(&id, "AddItem", &payload.type_url, len),
                es(event_sourced_stream_in::Message::Command(command)),
            )?;
            let event = EventSourcedEvent { sequence, payload: Some(payload.clone()) };
            close(event_len(&payload), es(event_sourced_stream_in::Message::Event(event)))?;
            let init = EventSourcedInit {
                service_name: "a.Cart".into(),
                entity_id: id.clone(),
                snapshot: Some(EventSourcedSnapshot {
                    snapshot_sequence: sequence,
                    snapshot: Some(payload.clone()),
                }),
            };
            close(
                snapshot_init_len("a.Cart", &id, &payload),
                es(event_sourced_stream_in::Message::Init(init)),
            )?;
            let init = ValueEntityStreamIn {
                message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                    service_name: "a.Cart".into(),
                    entity_id: id.clone(),
                    state: Some(ValueEntityInitState { value: Some(payload.clone()) }),
                })),
            };
            close(value_init_len("a.Cart", &id, &payload), init.encoded_len())?;
            let action = ActionCommand {
                service_name: "a.Act".into(),
                name: "Do".into(),
                payload: Some(payload.clone()),
                metadata: None,
            };
            close(
                action_command_len("a.Act", "Do", &payload.type_url, len, 0),
                action.encoded_len(),
            )?;
        }
    }
}

//! Checking request payloads and reading their entity keys, without decoding them.
//!
//! A request stays the bytes the client sent all the way to the user function. The proxy still
//! promises that a payload which does not decode as the method's input type is rejected with
//! INVALID_ARGUMENT before it reaches an entity, so [`check_message`] walks the bytes against the
//! descriptor (framing, wire types, UTF-8 of strings, nested messages) without allocating.
//! [`KeyReader`] picks the entity key fields out during the same walk.

use std::fmt;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::wire::{FieldReader, WireError, WireValue};

/// Protobuf's own limit on message nesting.
const MAX_DEPTH: u32 = 100;

/// Why a payload does not decode as its declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// Full name of the message type being read where the problem is.
    pub message: String,
    /// What is wrong, including the field and byte offset when known.
    pub reason: String,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.reason)
    }
}

impl PayloadError {
    fn wire(message: &MessageDescriptor, error: WireError) -> Self {
        PayloadError {
            message: message.full_name().to_owned(),
            reason: error.to_string(),
        }
    }

    fn field(
        message: &MessageDescriptor,
        field: &FieldDescriptor,
        offset: usize,
        what: &str,
    ) -> Self {
        PayloadError {
            message: message.full_name().to_owned(),
            reason: format!(
                "field `{}` (number {}) at byte {offset}: {what}",
                field.name(),
                field.number()
            ),
        }
    }
}

/// Checks that `bytes` decode as a `message`.
pub fn check_message(message: &MessageDescriptor, bytes: &[u8]) -> Result<(), PayloadError> {
    check_fields(message, FieldReader::new(bytes), 0, |_, _| {})
}

/// Walks every field of `message`, checking each against its declaration, and hands the top
/// level fields to `visit`.
fn check_fields<'a>(
    message: &MessageDescriptor,
    reader: FieldReader<'a>,
    depth: u32,
    mut visit: impl FnMut(u32, WireValue<'a>),
) -> Result<(), PayloadError> {
    if depth > MAX_DEPTH {
        return Err(PayloadError {
            message: message.full_name().to_owned(),
            reason: format!("messages nested deeper than {MAX_DEPTH}"),
        });
    }
    for field in reader {
        let (number, value, offset) = field.map_err(|e| PayloadError::wire(message, e))?;
        if let Some(field) = message.get_field(number) {
            check_value(message, &field, value, offset, depth)?;
        }
        visit(number, value);
    }
    Ok(())
}

fn check_value(
    message: &MessageDescriptor,
    field: &FieldDescriptor,
    value: WireValue<'_>,
    offset: usize,
    depth: u32,
) -> Result<(), PayloadError> {
    let mismatch = |found: &str| {
        PayloadError::field(
            message,
            field,
            offset,
            &format!("declared {:?} but the wire has {found}", field.kind()),
        )
    };
    match value {
        WireValue::LengthDelimited(bytes) => match field.kind() {
            Kind::Message(inner) if !field.is_group() => {
                let base = offset; // errors inside nested messages keep outer offsets approximate
                check_fields(
                    &inner,
                    FieldReader::nested(bytes, base),
                    depth + 1,
                    |_, _| {},
                )
            }
            Kind::String => std::str::from_utf8(bytes).map(|_| ()).map_err(|_| {
                PayloadError::field(message, field, offset, "string is not valid UTF-8")
            }),
            Kind::Bytes => Ok(()),
            kind if field.is_list() && packed_width(&kind).is_some() => {
                check_packed(bytes, packed_width(&kind).unwrap_or(Packed::Varint))
                    .map_err(|what| PayloadError::field(message, field, offset, what))
            }
            _ => Err(mismatch("a length-delimited value")),
        },
        WireValue::Group(bytes) => match field.kind() {
            Kind::Message(inner) if field.is_group() => check_fields(
                &inner,
                FieldReader::nested(bytes, offset),
                depth + 1,
                |_, _| {},
            ),
            _ => Err(mismatch("a group")),
        },
        WireValue::Varint(_) => match packed_width(&field.kind()) {
            Some(Packed::Varint) => Ok(()),
            _ => Err(mismatch("a varint")),
        },
        WireValue::Fixed64(_) => match packed_width(&field.kind()) {
            Some(Packed::Fixed(8)) => Ok(()),
            _ => Err(mismatch("a 64-bit value")),
        },
        WireValue::Fixed32(_) => match packed_width(&field.kind()) {
            Some(Packed::Fixed(4)) => Ok(()),
            _ => Err(mismatch("a 32-bit value")),
        },
    }
}

/// How a scalar kind is encoded, which is also how its packed form is laid out.
#[derive(Clone, Copy)]
enum Packed {
    Varint,
    Fixed(usize),
}

fn packed_width(kind: &Kind) -> Option<Packed> {
    Some(match kind {
        Kind::Int32
        | Kind::Int64
        | Kind::Uint32
        | Kind::Uint64
        | Kind::Sint32
        | Kind::Sint64
        | Kind::Bool
        | Kind::Enum(_) => Packed::Varint,
        Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => Packed::Fixed(8),
        Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => Packed::Fixed(4),
        Kind::String | Kind::Bytes | Kind::Message(_) => return None,
    })
}

fn check_packed(bytes: &[u8], packed: Packed) -> Result<(), &'static str> {
    match packed {
        Packed::Fixed(width) if bytes.len().is_multiple_of(width) => Ok(()),
        Packed::Fixed(_) => Err("packed values are not a whole number of elements"),
        Packed::Varint => {
            // A varint ends at a byte without the continuation bit, at most 10 bytes in.
            let mut run = 0;
            for &byte in bytes {
                run += 1;
                if run > 10 {
                    return Err("packed varint longer than 10 bytes");
                }
                if byte & 0x80 == 0 {
                    run = 0;
                }
            }
            if run == 0 {
                Ok(())
            } else {
                Err("truncated packed varint")
            }
        }
    }
}

/// Reads the entity key of one input message type: the fields marked `(cloudstate.entity_key)`
/// (option 1080, or the legacy 50002), in declaration order, joined with `-`.
#[derive(Debug, Clone)]
pub struct KeyReader {
    message: MessageDescriptor,
    fields: Vec<FieldDescriptor>,
}

/// Why a message type cannot serve as the input of a keyed entity method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReaderError {
    /// No field is marked as entity key.
    NoKeyField,
    /// A marked field has a type whose text form is not portable.
    UnsupportedField {
        /// The field's name.
        field: String,
        /// Why it cannot be a key.
        reason: String,
    },
}

impl fmt::Display for KeyReaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReaderError::NoKeyField => {
                write!(
                    f,
                    "no field is marked with the (cloudstate.entity_key) option"
                )
            }
            KeyReaderError::UnsupportedField { field, reason } => {
                write!(f, "entity key field `{field}` {reason}")
            }
        }
    }
}

impl KeyReader {
    /// Prepares to read keys of `message`, whose key fields are those `is_key` accepts.
    pub fn new(
        message: &MessageDescriptor,
        is_key: impl Fn(&FieldDescriptor) -> bool,
    ) -> Result<Self, KeyReaderError> {
        let fields: Vec<_> = message.fields().filter(|f| is_key(f)).collect();
        if fields.is_empty() {
            return Err(KeyReaderError::NoKeyField);
        }
        for field in &fields {
            let unsupported = |reason: &str| KeyReaderError::UnsupportedField {
                field: field.name().to_owned(),
                reason: reason.to_owned(),
            };
            if field.is_list() || field.is_map() {
                return Err(unsupported("is repeated; a key must be a single value"));
            }
            match field.kind() {
                Kind::Float | Kind::Double => {
                    return Err(unsupported("is a floating point number"));
                }
                Kind::Bytes | Kind::Message(_) => {
                    return Err(unsupported(
                        "is bytes or a message; a key must be a string, number, bool or enum",
                    ));
                }
                _ => {}
            }
        }
        // `fields()` yields declaration order already; keep it explicit for readers.
        Ok(KeyReader {
            message: message.clone(),
            fields,
        })
    }

    /// The message type this reader is for.
    pub fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// Checks that `bytes` decode as the message and returns its entity key.
    ///
    /// Returns `Ok(None)` when every key field holds its default value (the request names no
    /// entity).
    pub fn read(&self, bytes: &[u8]) -> Result<Option<String>, PayloadError> {
        let mut values: Vec<Option<WireValue<'_>>> = vec![None; self.fields.len()];
        check_fields(
            &self.message,
            FieldReader::new(bytes),
            0,
            |number, value| {
                if let Some(i) = self.fields.iter().position(|f| f.number() == number) {
                    values[i] = Some(value); // the last occurrence of a scalar wins
                }
            },
        )?;
        if values.iter().all(|value| is_default(*value)) {
            return Ok(None);
        }
        let mut key = String::new();
        for (i, (field, value)) in self.fields.iter().zip(values).enumerate() {
            if i > 0 {
                key.push('-');
            }
            push_key_part(&mut key, field, value);
        }
        Ok(Some(key))
    }
}

fn is_default(value: Option<WireValue<'_>>) -> bool {
    match value {
        None => true,
        Some(WireValue::Varint(v) | WireValue::Fixed64(v)) => v == 0,
        Some(WireValue::Fixed32(v)) => v == 0,
        Some(WireValue::LengthDelimited(bytes) | WireValue::Group(bytes)) => bytes.is_empty(),
    }
}

/// Appends the text form of one key field's value (its default when absent).
fn push_key_part(key: &mut String, field: &FieldDescriptor, value: Option<WireValue<'_>>) {
    use std::fmt::Write;
    let raw = match value {
        Some(WireValue::Varint(v) | WireValue::Fixed64(v)) => v,
        Some(WireValue::Fixed32(v)) => u64::from(v),
        Some(WireValue::LengthDelimited(bytes)) => {
            // Only string fields can be keys, and check_fields validated the UTF-8.
            key.push_str(std::str::from_utf8(bytes).unwrap_or_default());
            return;
        }
        Some(WireValue::Group(_)) | None => 0,
    };
    let _ = match field.kind() {
        Kind::Int32 => write!(key, "{}", raw as i32),
        Kind::Sfixed32 => write!(key, "{}", raw as u32 as i32),
        Kind::Int64 | Kind::Sfixed64 => write!(key, "{}", raw as i64),
        Kind::Uint32 | Kind::Fixed32 => write!(key, "{}", raw as u32),
        Kind::Sint32 => write!(key, "{}", ((raw as u32) >> 1) as i32 ^ -((raw & 1) as i32)),
        Kind::Sint64 => write!(key, "{}", (raw >> 1) as i64 ^ -((raw & 1) as i64)),
        Kind::Bool => write!(key, "{}", raw != 0),
        Kind::Enum(e) => match e.get_value(raw as i32) {
            Some(value) => write!(key, "{}", value.name()),
            None => write!(key, "{}", raw as i32),
        },
        _ => write!(key, "{raw}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::compile;
    use prost::Message;

    const PROTO: &str = r#"
        syntax = "proto3";
        package t;
        import "cloudstate/entity_key.proto";
        enum Color { RED = 0; BLUE = 1; }
        message Inner { string label = 1; repeated int32 numbers = 2; }
        message Keyed {
            string user = 1 [(cloudstate.entity_key) = true];
            int64 shard = 2 [(cloudstate.entity_key) = true];
            Inner inner = 3;
            bytes blob = 4;
            Color color = 5;
            sint32 delta = 6;
        }
        message ByEnum { Color color = 1 [(cloudstate.entity_key) = true]; }
        message ByFloat { float f = 1 [(cloudstate.entity_key) = true]; }
        message NoKey { string user = 1; }
    "#;

    fn message(name: &str) -> MessageDescriptor {
        compile(&[("t.proto", PROTO)])
            .get_message_by_name(name)
            .unwrap()
    }

    fn reader(name: &str) -> Result<KeyReader, KeyReaderError> {
        KeyReader::new(&message(name), crate::model::is_entity_key)
    }

    /// Encodes a dynamic message built from JSON, so the tests read like the messages they send.
    fn encode(name: &str, json: &str) -> Vec<u8> {
        let mut de = serde_json::Deserializer::from_str(json);
        prost_reflect::DynamicMessage::deserialize(message(name), &mut de)
            .unwrap()
            .encode_to_vec()
    }

    #[test]
    fn joins_key_fields_in_declaration_order() {
        let keys = reader("t.Keyed").unwrap();
        let bytes = encode(
            "t.Keyed",
            r#"{"shard": "-7", "user": "ann", "inner": {"label": "x", "numbers": [1, 2]}}"#,
        );
        assert_eq!(keys.read(&bytes).unwrap().as_deref(), Some("ann--7"));
        let bytes = encode("t.Keyed", r#"{"user": "bob"}"#);
        assert_eq!(keys.read(&bytes).unwrap().as_deref(), Some("bob-0"));
    }

    #[test]
    fn a_request_with_only_default_keys_has_no_key() {
        let keys = reader("t.Keyed").unwrap();
        assert_eq!(
            keys.read(&encode("t.Keyed", r#"{"blob": "AAE="}"#))
                .unwrap(),
            None
        );
        assert_eq!(keys.read(&[]).unwrap(), None);
    }

    #[test]
    fn enum_keys_use_value_names() {
        let keys = reader("t.ByEnum").unwrap();
        assert_eq!(
            keys.read(&encode("t.ByEnum", r#"{"color": "BLUE"}"#))
                .unwrap()
                .as_deref(),
            Some("BLUE")
        );
    }

    #[test]
    fn rejects_unusable_key_declarations() {
        assert_eq!(reader("t.NoKey").unwrap_err(), KeyReaderError::NoKeyField);
        assert!(matches!(
            reader("t.ByFloat"),
            Err(KeyReaderError::UnsupportedField { .. })
        ));
    }

    #[test]
    fn rejects_payloads_that_do_not_decode() {
        let keys = reader("t.Keyed").unwrap();
        // field 1 (string) sent as a varint
        let err = keys.read(&[0x08, 0x01]).unwrap_err();
        assert!(err.reason.contains("`user`"), "{err}");
        // invalid UTF-8 in the string
        let err = keys.read(&[0x0a, 0x02, 0xff, 0xfe]).unwrap_err();
        assert!(err.reason.contains("UTF-8"), "{err}");
        // a nested message that is itself malformed: Inner.label as a 32-bit value
        let err = keys.read(&[0x1a, 0x05, 0x0d, 1, 2, 3, 4]).unwrap_err();
        assert_eq!(err.message, "t.Inner");
        // truncated
        assert!(keys.read(&[0x0a, 0x05, b'a']).is_err());
        // packed varints that stop in the middle
        assert!(check_message(&message("t.Inner"), &[0x12, 0x01, 0x80]).is_err());
    }

    #[test]
    fn unknown_fields_are_allowed_when_well_formed() {
        let keys = reader("t.Keyed").unwrap();
        let mut bytes = encode("t.Keyed", r#"{"user": "ann"}"#);
        bytes.extend_from_slice(&[0xf8, 0x01, 0x05]); // field 31, varint 5
        assert_eq!(keys.read(&bytes).unwrap().as_deref(), Some("ann-0"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let keys = reader("t.Keyed").unwrap();
            let _ = keys.read(&bytes);
        }

        #[test]
        fn agrees_with_a_full_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let message = message("t.Keyed");
            let ours = check_message(&message, &bytes).is_ok();
            let theirs = prost_reflect::DynamicMessage::decode(message, &bytes[..]).is_ok();
            // We may be stricter than prost-reflect (it accepts some wire type mismatches as
            // unknown fields), never more lenient.
            proptest::prop_assert!(!ours || theirs, "accepted bytes prost-reflect rejects");
        }
    }
}

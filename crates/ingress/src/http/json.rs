//! The proto3 JSON mapping of requests and replies, and the text form of path and query values.
//!
//! JSON goes through prost-reflect's implementation of the canonical mapping: lowerCamelCase
//! names on output (both names accepted on input), 64-bit integers as strings, enums by name,
//! bytes as base64, the well-known types in their special forms and `Any` with `@type` resolved
//! in the user function's descriptor pool. Replies print fields that hold their default value
//! (as the original proxy did), except unset message fields. Unknown JSON fields are an error.
//!
//! Path variables and query parameters arrive as text: [`FieldPath::set`] converts it to the
//! field's type.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

/// Base64 as the JSON mapping reads it: standard alphabet, padding optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 with the URL-safe alphabet, padding optional.
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Wrapper types whose JSON (and text) form is their `value` field.
const WRAPPERS: &[&str] = &[
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

/// Well-known types whose JSON form is a string parsed by the JSON mapping.
const STRING_FORMS: &[&str] = &[
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
];

/// The options replies are printed with.
fn serialize_options() -> SerializeOptions {
    SerializeOptions::new().skip_default_fields(false)
}

/// A path from a message to one of its (possibly nested) fields that takes a text value: a
/// scalar, an enum, or a well-known type with a scalar or string JSON form.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath {
    fields: Vec<FieldDescriptor>,
    name: String,
}

impl FieldPath {
    /// Resolves `path` (field names, or their JSON names) in `message`. Every field but the last
    /// must be a singular message; the last must take a text value.
    pub(crate) fn resolve<S: AsRef<str>>(
        message: &MessageDescriptor,
        path: &[S],
    ) -> Result<FieldPath, String> {
        let name = path.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(".");
        let mut fields = Vec::with_capacity(path.len());
        let mut current = message.clone();
        for (index, part) in path.iter().enumerate() {
            let part = part.as_ref();
            let field = current
                .get_field_by_name(part)
                .or_else(|| current.get_field_by_json_name(part))
                .ok_or_else(|| format!("{} has no field {part:?}", current.full_name()))?;
            let last = index + 1 == path.len();
            if field.is_map() {
                return Err(format!("{name}: field {} is a map", field.full_name()));
            }
            match field.kind() {
                Kind::Message(inner) if !last => {
                    if field.is_list() {
                        return Err(format!("{name}: field {} is repeated", field.full_name()));
                    }
                    if takes_text(&field.kind()) {
                        return Err(format!(
                            "{name}: field {} is a {}, which has no fields to select",
                            field.full_name(),
                            inner.full_name()
                        ));
                    }
                    current = inner;
                }
                _ if !last => {
                    return Err(format!(
                        "{name}: field {} is not a message",
                        field.full_name()
                    ));
                }
                kind if !takes_text(&kind) => {
                    return Err(format!(
                        "{name}: field {} is a message; only scalar, enum and well-known wrapper \
                         fields take values from the path or the query",
                        field.full_name()
                    ));
                }
                _ => {}
            }
            fields.push(field);
        }
        if fields.is_empty() {
            return Err("empty field path".into());
        }
        Ok(FieldPath { fields, name })
    }

    /// Whether the last field is repeated.
    pub(crate) fn is_repeated(&self) -> bool {
        self.leaf().is_list()
    }

    fn leaf(&self) -> &FieldDescriptor {
        // `resolve` never builds an empty path.
        &self.fields[self.fields.len() - 1]
    }

    /// Sets the field to `text` converted to its type, creating the messages on the way; a
    /// repeated field gets `text` appended.
    pub(crate) fn set(&self, message: &mut DynamicMessage, text: &str) -> Result<(), String> {
        let leaf = self.leaf();
        let value = from_text(&leaf.kind(), text).map_err(|reason| {
            format!(
                "{}: {text:?} is not a valid {}: {reason}",
                self.name,
                kind_name(&leaf.kind())
            )
        })?;
        let mut current = message;
        for field in &self.fields[..self.fields.len() - 1] {
            current = match current.get_field_mut(field) {
                Value::Message(inner) => inner,
                _ => return Err(format!("{}: {} is not a message", self.name, field.name())),
            };
        }
        if leaf.is_list() {
            if let Value::List(values) = current.get_field_mut(leaf) {
                values.push(value);
                return Ok(());
            }
            return Err(format!("{}: not a list", self.name));
        }
        current
            .try_set_field(leaf, value)
            .map_err(|error| format!("{}: {error}", self.name))
    }
}

/// Whether a field of this kind takes its value from text.
fn takes_text(kind: &Kind) -> bool {
    match kind {
        Kind::Message(message) => {
            let name = message.full_name();
            WRAPPERS.contains(&name) || STRING_FORMS.contains(&name)
        }
        _ => true,
    }
}

/// Converts the text of a path variable or query parameter to a value of `kind`.
fn from_text(kind: &Kind, text: &str) -> Result<Value, String> {
    let invalid = |error: &dyn std::fmt::Display| error.to_string();
    Ok(match kind {
        Kind::String => Value::String(text.to_owned()),
        Kind::Bytes => Value::Bytes(
            BASE64
                .decode(text)
                .or_else(|_| BASE64_URL.decode(text))
                .map_err(|e| invalid(&e))?
                .into(),
        ),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err("expected true or false".into()),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(text.parse().map_err(|e| invalid(&e))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(text.parse().map_err(|e| invalid(&e))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|e| invalid(&e))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|e| invalid(&e))?),
        Kind::Float => Value::F32(text.parse().map_err(|e| invalid(&e))?),
        Kind::Double => Value::F64(text.parse().map_err(|e| invalid(&e))?),
        Kind::Enum(enumeration) => {
            match enumeration.get_value_by_name(text) {
                Some(value) => Value::EnumNumber(value.number()),
                None => Value::EnumNumber(text.parse().map_err(|_| {
                    format!("{} has no value named {text:?}", enumeration.full_name())
                })?),
            }
        }
        Kind::Message(message) if WRAPPERS.contains(&message.full_name()) => {
            let mut wrapper = DynamicMessage::new(message.clone());
            let value_field = message
                .get_field(1)
                .ok_or_else(|| format!("{} has no field 1", message.full_name()))?;
            let inner = from_text(&value_field.kind(), text)?;
            wrapper
                .try_set_field(&value_field, inner)
                .map_err(|e| invalid(&e))?;
            Value::Message(wrapper)
        }
        Kind::Message(message) => {
            let text = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(text);
            Value::Message(
                DynamicMessage::deserialize(message.clone(), text).map_err(|e| invalid(&e))?,
            )
        }
    })
}

/// How a kind is called in messages.
fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Enum(enumeration) => enumeration.full_name().to_owned(),
        Kind::Message(message) => message.full_name().to_owned(),
        scalar => format!("{scalar:?}").to_ascii_lowercase(),
    }
}

/// Parses a JSON request body as `message`. An error names the field at fault and the position.
pub(crate) fn parse_message(
    message: &MessageDescriptor,
    json: &[u8],
) -> Result<DynamicMessage, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = deserialize(message, &mut deserializer)?;
    deserializer
        .end()
        .map_err(|error| format!("invalid JSON: {error}"))?;
    Ok(parsed)
}

/// Parses a JSON request body as the value of `field` (a top-level field of `message`): the
/// message with only that field set.
pub(crate) fn parse_field(
    message: &MessageDescriptor,
    field: &FieldDescriptor,
    json: &[u8],
) -> Result<DynamicMessage, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|error| format!("invalid JSON: {error}"))?;
    let mut wrapped = serde_json::Map::with_capacity(1);
    wrapped.insert(field.json_name().to_owned(), value);
    deserialize(message, serde_json::Value::Object(wrapped))
}

fn deserialize<'de, D>(
    message: &MessageDescriptor,
    deserializer: D,
) -> Result<DynamicMessage, String>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
    DynamicMessage::deserialize_with_options(message.clone(), tracked, &DeserializeOptions::new())
        .map_err(|error| {
            let path = track.path().to_string();
            if path == "." || path.is_empty() {
                format!("invalid JSON for {}: {error}", message.full_name())
            } else {
                format!(
                    "invalid JSON for {} at {path}: {error}",
                    message.full_name()
                )
            }
        })
}

/// Prints `message` as JSON.
pub(crate) fn print_message(message: &DynamicMessage) -> Result<Vec<u8>, String> {
    let mut serializer = serde_json::Serializer::new(Vec::with_capacity(128));
    message
        .serialize_with_options(&mut serializer, &serialize_options())
        .map_err(|error| error.to_string())?;
    Ok(serializer.into_inner())
}

/// Prints the value of `field` (a top-level field of `message`) as JSON.
pub(crate) fn print_field(
    message: &DynamicMessage,
    field: &FieldDescriptor,
) -> Result<Vec<u8>, String> {
    let value = message.get_field(field);
    match value.as_ref() {
        Value::Message(inner) => return print_message(inner),
        Value::List(items) if matches!(field.kind(), Kind::Message(_)) => {
            let mut out = vec![b'['];
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                match item {
                    Value::Message(item) => out.extend(print_message(item)?),
                    _ => return Err(format!("{} holds a non-message", field.full_name())),
                }
            }
            out.push(b']');
            return Ok(out);
        }
        _ => {}
    }
    // Scalars, lists of scalars and maps have no serializer of their own: print a message
    // holding only this field and take the field's entry.
    let mut alone = DynamicMessage::new(message.descriptor());
    alone
        .try_set_field(field, value.into_owned())
        .map_err(|error| error.to_string())?;
    let printed = alone
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|error| error.to_string())?;
    let entry = match printed {
        serde_json::Value::Object(mut entries) => entries.remove(field.json_name()),
        _ => None,
    };
    serde_json::to_vec(&entry.unwrap_or(serde_json::Value::Null)).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    /// A message of every shape the mapping handles.
    pub(crate) const KITCHEN: &str = r#"
        syntax = "proto3";
        package test;
        import "google/protobuf/any.proto";
        import "google/protobuf/duration.proto";
        import "google/protobuf/empty.proto";
        import "google/protobuf/field_mask.proto";
        import "google/protobuf/struct.proto";
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/wrappers.proto";

        enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
        message Inner { string label = 1; Deeper deeper = 2; }
        message Deeper { int64 n = 1; }
        message Kitchen {
            string text = 1;
            int32 i32 = 2;
            int64 i64 = 3;
            uint32 u32 = 4;
            uint64 u64 = 5;
            sint64 s64 = 6;
            fixed64 f64 = 7;
            float f = 8;
            double d = 9;
            bool flag = 10;
            bytes data = 11;
            Color color = 12;
            Inner inner = 13;
            repeated string tags = 14;
            repeated Inner inners = 15;
            map<string, int64> counts = 16;
            google.protobuf.Timestamp at = 17;
            google.protobuf.Duration took = 18;
            google.protobuf.Int64Value maybe = 19;
            google.protobuf.StringValue name_value = 20;
            google.protobuf.Struct extra = 21;
            google.protobuf.Value any_value = 22;
            google.protobuf.FieldMask mask = 23;
            google.protobuf.Empty nothing = 24;
            google.protobuf.Any packed = 25;
            oneof choice { string left = 26; int32 right = 27; }
            repeated Color colors = 28;
            google.protobuf.BoolValue maybe_flag = 29;
        }
    "#;

    pub(crate) fn pool(files: &[(&str, &str)]) -> DescriptorPool {
        let sources = files.iter().map(|(n, s)| (n.to_string(), s.to_string()));
        let mut resolver = protox::file::ChainFileResolver::new();
        resolver.add(Sources(sources.collect()));
        resolver.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_files(files.iter().map(|(name, _)| *name))
            .unwrap();
        DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap()
    }

    /// In-memory `.proto` sources, with the annotation protos of the protocol.
    struct Sources(Vec<(String, String)>);

    impl protox::file::FileResolver for Sources {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            let annotations = cloudstate_protocol::ANNOTATION_PROTOS
                .iter()
                .map(|(n, s)| (*n, *s));
            let files = self.0.iter().map(|(n, s)| (n.as_str(), s.as_str()));
            files
                .chain(annotations)
                .find(|(n, _)| *n == name)
                .map(|(_, source)| protox::file::File::from_source(name, source))
                .unwrap_or_else(|| Err(protox::Error::file_not_found(name)))
        }
    }

    fn kitchen() -> MessageDescriptor {
        pool(&[("kitchen.proto", KITCHEN)])
            .get_message_by_name("test.Kitchen")
            .unwrap()
    }

    fn round_trip(json: &str) -> String {
        let message = parse_message(&kitchen(), json.as_bytes()).unwrap();
        let bytes = prost::Message::encode_to_vec(&message);
        let decoded = DynamicMessage::decode(kitchen(), bytes.as_slice()).unwrap();
        String::from_utf8(print_message(&decoded).unwrap()).unwrap()
    }

    fn printed(json: &str) -> serde_json::Value {
        serde_json::from_str(&round_trip(json)).unwrap()
    }

    #[test]
    fn prints_defaults_int64_as_strings_and_enums_by_name() {
        let out = printed(r#"{"i64": 5, "u64": "18446744073709551615", "color": 2, "flag": true}"#);
        assert_eq!(out["i64"], "5");
        assert_eq!(out["u64"], "18446744073709551615");
        assert_eq!(out["s64"], "0");
        assert_eq!(out["i32"], 0);
        assert_eq!(out["text"], "");
        assert_eq!(out["color"], "GREEN");
        assert_eq!(out["tags"], serde_json::json!([]));
        assert_eq!(out["counts"], serde_json::json!({}));
        assert_eq!(out["flag"], true);
        // Unset message fields are left out.
        assert!(
            out.get("inner").is_none() && out.get("at").is_none(),
            "{out}"
        );
    }

    #[test]
    fn accepts_both_field_names_and_prints_camel_case() {
        let out = printed(r#"{"name_value": "a", "maybeFlag": false}"#);
        assert_eq!(out["nameValue"], "a");
        assert_eq!(out["maybeFlag"], false);
    }

    #[test]
    fn maps_well_known_types() {
        let json = r#"{
            "at": "2024-01-02T03:04:05.500Z",
            "took": "1.5s",
            "maybe": "42",
            "extra": {"a": [1, "x", null, {"b": true}]},
            "anyValue": 3.5,
            "mask": "text,inner.label",
            "nothing": {},
            "packed": {"@type": "type.googleapis.com/test.Inner", "label": "in an Any"},
            "data": "aGk="
        }"#;
        let out = printed(json);
        assert_eq!(out["at"], "2024-01-02T03:04:05.500Z");
        assert_eq!(out["took"], "1.500s");
        assert_eq!(out["maybe"], "42");
        assert_eq!(
            out["extra"],
            serde_json::json!({"a": [1.0, "x", null, {"b": true}]})
        );
        assert_eq!(out["anyValue"], 3.5);
        assert_eq!(out["mask"], "text,inner.label");
        assert_eq!(out["nothing"], serde_json::json!({}));
        assert_eq!(
            out["packed"],
            serde_json::json!({"@type": "type.googleapis.com/test.Inner", "label": "in an Any"})
        );
        assert_eq!(out["data"], "aGk=");
    }

    #[test]
    fn parse_errors_name_the_field() {
        let error = |json: &str| parse_message(&kitchen(), json.as_bytes()).unwrap_err();
        assert!(
            error(r#"{"nope": 1}"#).contains("nope"),
            "{}",
            error(r#"{"nope": 1}"#)
        );
        let wrong = error(r#"{"inner": {"deeper": {"n": "x"}}}"#);
        assert!(wrong.contains("inner.deeper.n"), "{wrong}");
        let wrong = error(r#"{"i32": "abc"}"#);
        assert!(wrong.contains("i32"), "{wrong}");
        assert!(error(r#"{"text": "a"} trailing"#).contains("trailing"));
        assert!(error("{").contains("invalid JSON"));
        assert!(error(r#"{"color": "BLUE"}"#).contains("BLUE"));
        let any = error(r#"{"packed": {"@type": "type.googleapis.com/test.Missing"}}"#);
        assert!(any.contains("test.Missing"), "{any}");
        assert!(error(r#"{"left": "a", "right": 1}"#).contains("oneof"));
    }

    #[test]
    fn parses_a_body_field() {
        let message = kitchen();
        let field = message.get_field_by_name("inner").unwrap();
        let parsed = parse_field(&message, &field, br#"{"label": "x"}"#).unwrap();
        let out: serde_json::Value =
            serde_json::from_slice(&print_message(&parsed).unwrap()).unwrap();
        assert_eq!(out["inner"], serde_json::json!({"label": "x"}));
        let tags = message.get_field_by_name("tags").unwrap();
        let parsed = parse_field(&message, &tags, br#"["a", "b"]"#).unwrap();
        assert_eq!(print_field(&parsed, &tags).unwrap(), br#"["a","b"]"#);
        let error = parse_field(&message, &field, br#"{"label": 1}"#).unwrap_err();
        assert!(error.contains("inner.label"), "{error}");
    }

    #[test]
    fn prints_a_response_field() {
        let message =
            parse_message(&kitchen(), br#"{"inners": [{"label": "a"}], "i64": 7}"#).unwrap();
        let field = |name: &str| kitchen().get_field_by_name(name).unwrap();
        assert_eq!(
            print_field(&message, &field("inners")).unwrap(),
            br#"[{"label":"a"}]"#
        );
        assert_eq!(print_field(&message, &field("i64")).unwrap(), br#""7""#);
        // An unset message prints as its default, with default fields.
        assert_eq!(
            print_field(&message, &field("inner")).unwrap(),
            br#"{"label":""}"#
        );
        assert_eq!(print_field(&message, &field("tags")).unwrap(), b"[]");
    }

    fn set(path: &str, text: &str) -> Result<serde_json::Value, String> {
        let parts: Vec<&str> = path.split('.').collect();
        let field_path = FieldPath::resolve(&kitchen(), &parts)?;
        let mut message = DynamicMessage::new(kitchen());
        field_path.set(&mut message, text)?;
        Ok(serde_json::from_slice(&print_message(&message).unwrap()).unwrap())
    }

    #[test]
    fn converts_text_to_every_scalar_kind() {
        assert_eq!(set("text", "héllo").unwrap()["text"], "héllo");
        assert_eq!(set("i32", "-5").unwrap()["i32"], -5);
        assert_eq!(set("i64", "-9000000000").unwrap()["i64"], "-9000000000");
        assert_eq!(set("u32", "7").unwrap()["u32"], 7);
        assert_eq!(
            set("f64", "18446744073709551615").unwrap()["f64"],
            "18446744073709551615"
        );
        assert_eq!(set("f", "1.5").unwrap()["f"], 1.5);
        assert_eq!(set("d", "NaN").unwrap()["d"], "NaN");
        assert_eq!(set("flag", "TRUE").unwrap()["flag"], true);
        assert_eq!(set("data", "aGk").unwrap()["data"], "aGk=");
        assert_eq!(set("data", "-_8=").unwrap()["data"], "+/8=");
        assert_eq!(set("color", "RED").unwrap()["color"], "RED");
        assert_eq!(set("color", "2").unwrap()["color"], "GREEN");
        assert_eq!(set("inner.label", "x").unwrap()["inner"]["label"], "x");
        assert_eq!(
            set("inner.deeper.n", "3").unwrap()["inner"]["deeper"]["n"],
            "3"
        );
        assert_eq!(set("maybe", "12").unwrap()["maybe"], "12");
        assert_eq!(set("maybeFlag", "false").unwrap()["maybeFlag"], false);
        assert_eq!(
            set("at", "1970-01-01T00:00:01Z").unwrap()["at"],
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(set("took", "2s").unwrap()["took"], "2s");
        assert_eq!(set("tags", "a").unwrap()["tags"], serde_json::json!(["a"]));
        assert_eq!(set("right", "4").unwrap()["right"], 4);
    }

    #[test]
    fn rejects_bad_text_naming_the_field() {
        for (path, text, expected) in [
            ("i32", "x", "i32: \"x\" is not a valid int32"),
            ("i32", "3000000000", "i32"),
            ("u64", "-1", "u64"),
            ("flag", "yes", "expected true or false"),
            ("data", "!!", "data"),
            ("color", "BLUE", "test.Color has no value named \"BLUE\""),
            ("at", "yesterday", "at"),
            ("inner.deeper.n", "1.5", "inner.deeper.n"),
        ] {
            let error = set(path, text).unwrap_err();
            assert!(error.contains(expected), "{path}={text}: {error}");
        }
    }

    #[test]
    fn resolves_only_fields_that_take_text() {
        let resolve = |path: &str| {
            let parts: Vec<&str> = path.split('.').collect();
            FieldPath::resolve(&kitchen(), &parts).map(|p| p.name)
        };
        assert_eq!(resolve("inner.deeper.n").unwrap(), "inner.deeper.n");
        assert!(
            resolve("missing")
                .unwrap_err()
                .contains("no field \"missing\"")
        );
        assert!(resolve("inner").unwrap_err().contains("is a message"));
        assert!(resolve("inners.label").unwrap_err().contains("repeated"));
        assert!(resolve("counts").unwrap_err().contains("map"));
        assert!(resolve("text.x").unwrap_err().contains("not a message"));
        assert!(
            resolve("maybe.value")
                .unwrap_err()
                .contains("no fields to select")
        );
        assert!(resolve("extra").unwrap_err().contains("is a message"));
    }
}

//! How set elements, map keys and register values travel: as `google.protobuf.Any`, with the
//! encodings every Cloudstate support library shares, so that equal values are equal bytes.
//!
//! - Protobuf messages: `type.googleapis.com/<full message name>`, the message's encoding.
//! - Primitives: `p.cloudstate.io/<string|bytes|int32|int64|float|double|bool>`, the encoding
//!   of a message whose field 1 holds the value; the default value (`""`, `0`, `false`, ...)
//!   is zero bytes.

use bytes::Bytes;
use cloudstate_protocol::Any;
use prost::{Message, Name};

use crate::Error;
use crate::reply::decode_any;

/// Type URL prefix of primitive values.
const PRIMITIVE: &str = "p.cloudstate.io/";

/// A value that can be a CRDT's set element, map key or register value: it encodes to an
/// `Any`.
///
/// Implemented for the primitives (`str`, `String`, `[u8]`, `Vec<u8>`, `Bytes`, `i32`, `i64`,
/// `f32`, `f64`, `bool`), for protobuf messages that implement [`ProtoValue`], and for `Any`
/// itself (passed through as it is). Lookups take `&Q` where the element type borrows as `Q`,
/// so an `OrSet<String>` is searched with a `&str`.
pub trait ToAny {
    /// The value as a CRDT element.
    fn to_any(&self) -> Any;
}

/// A value a CRDT's set element, map key or register value decodes to; the inverse of
/// [`ToAny`], for the same types (the unsized ones excepted).
pub trait FromAny: Sized {
    /// Decodes `any`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownType`] when the type URL is not this type's, [`Error::Decode`] when the
    /// bytes do not decode.
    fn from_any(any: &Any) -> Result<Self, Error>;
}

/// What the typed CRDTs hold: a value that encodes to and decodes from an `Any`.
pub trait CrdtValue: ToAny + FromAny {}

impl<T: ToAny + FromAny> CrdtValue for T {}

/// Marks a protobuf message as usable as a CRDT element, key or value, encoded as
/// `type.googleapis.com/<full message name>`:
///
/// ```
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct Item { #[prost(string, tag = "1")] pub name: String }
/// # impl prost::Name for Item { const NAME: &'static str = "Item"; const PACKAGE: &'static str = "shop"; }
/// impl cloudstate::crdt::ProtoValue for Item {}
/// ```
///
/// (Primitive types are encoded the Cloudstate way instead, so they do not implement this.)
pub trait ProtoValue: Message + Name + Default {}

impl<M: ProtoValue> ToAny for M {
    fn to_any(&self) -> Any {
        Any::from_message(self)
    }
}

impl<M: ProtoValue> FromAny for M {
    fn from_any(any: &Any) -> Result<Self, Error> {
        decode_any(any)
    }
}

impl ToAny for Any {
    fn to_any(&self) -> Any {
        self.clone()
    }
}

impl FromAny for Any {
    fn from_any(any: &Any) -> Result<Self, Error> {
        Ok(any.clone())
    }
}

/// Implements [`ToAny`] and [`FromAny`] for primitive types, with prost's encodings of the
/// `google.protobuf` wrapper messages: field 1, omitted when it holds the default.
macro_rules! primitives {
    ($($type:ty => $name:literal),* $(,)?) => {
        $(
            impl ToAny for $type {
                fn to_any(&self) -> Any {
                    Any {
                        type_url: format!("{PRIMITIVE}{}", $name),
                        value: self.encode_to_vec().into(),
                    }
                }
            }

            impl FromAny for $type {
                fn from_any(any: &Any) -> Result<Self, Error> {
                    if any.type_url.strip_prefix(PRIMITIVE) != Some($name) {
                        return Err(Error::UnknownType {
                            type_url: any.type_url.clone(),
                        });
                    }
                    <$type as Message>::decode(any.value.clone()).map_err(|reason| Error::Decode {
                        type_url: any.type_url.clone(),
                        reason,
                    })
                }
            }
        )*
    };
}

primitives! {
    String => "string",
    Vec<u8> => "bytes",
    Bytes => "bytes",
    i32 => "int32",
    i64 => "int64",
    f32 => "float",
    f64 => "double",
    bool => "bool",
}

impl ToAny for str {
    fn to_any(&self) -> Any {
        self.to_owned().to_any()
    }
}

impl ToAny for [u8] {
    fn to_any(&self) -> Any {
        Bytes::copy_from_slice(self).to_any()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_are_field_one_and_defaults_are_empty() {
        assert_eq!(
            "".to_any(),
            Any {
                type_url: "p.cloudstate.io/string".into(),
                value: Bytes::new(),
            }
        );
        assert_eq!(&"ab".to_any().value[..], [0x0a, 2, b'a', b'b']);
        assert_eq!("ab".to_any(), String::from("ab").to_any());
        assert_eq!(&[1u8, 2][..].to_any(), &vec![1u8, 2].to_any());
        assert_eq!(b"".to_vec().to_any().type_url, "p.cloudstate.io/bytes");
        assert_eq!(&7i32.to_any().value[..], [0x08, 7]);
        assert_eq!(0i64.to_any().value.len(), 0);
        assert_eq!(true.to_any().type_url, "p.cloudstate.io/bool");
        assert_eq!(1.5f64.to_any().type_url, "p.cloudstate.io/double");
        assert_eq!(1.5f32.to_any().type_url, "p.cloudstate.io/float");
        assert_eq!(
            String::from_any(&"héllo".to_any()).unwrap(),
            "héllo".to_owned()
        );
        assert_eq!(i64::from_any(&(-3i64).to_any()).unwrap(), -3);
        assert_eq!(f64::from_any(&2.25f64.to_any()).unwrap(), 2.25);
        assert!(matches!(
            i32::from_any(&"x".to_any()),
            Err(Error::UnknownType { .. })
        ));
        let garbage = Any {
            type_url: "p.cloudstate.io/string".into(),
            value: Bytes::from_static(&[0x0a, 5]),
        };
        assert!(matches!(
            String::from_any(&garbage),
            Err(Error::Decode { .. })
        ));
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Item {
        #[prost(string, tag = "1")]
        name: String,
    }

    impl Name for Item {
        const NAME: &'static str = "Item";
        const PACKAGE: &'static str = "shop";
    }

    impl ProtoValue for Item {}

    #[test]
    fn messages_are_typed_by_their_full_name() {
        let item = Item { name: "a".into() };
        let any = item.to_any();
        assert_eq!(any.type_url, "type.googleapis.com/shop.Item");
        assert_eq!(Item::from_any(&any).unwrap(), item);
        assert!(Item::from_any(&"a".to_any()).is_err());
        assert_eq!(Any::from_any(&any).unwrap().to_any(), any);
    }
}

//! Metadata of action calls: the request headers the proxy passes on.

use cloudstate_protocol as protocol;

/// The metadata of an action call: the client's request headers (gRPC metadata / HTTP headers)
/// as the proxy passes them on in the call's first `ActionCommand`.
///
/// Keys compare ASCII case-insensitively (gRPC and HTTP header names are case-insensitive);
/// a key may occur more than once, in which case the getters return the first value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<protocol::MetadataEntry>,
}

impl Metadata {
    /// The metadata the proxy sent.
    pub(crate) fn from_proto(metadata: Option<protocol::Metadata>) -> Self {
        Metadata {
            entries: metadata
                .map(|metadata| metadata.entries)
                .unwrap_or_default(),
        }
    }

    /// The protocol's metadata.
    pub(crate) fn into_proto(self) -> Option<protocol::Metadata> {
        (!self.entries.is_empty()).then_some(protocol::Metadata {
            entries: self.entries,
        })
    }

    /// Adds a text entry.
    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.push(protocol::MetadataEntry {
            key: key.into(),
            value: Some(protocol::metadata_entry::Value::StringValue(value.into())),
        });
    }

    /// The first text value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values(key).find_map(|value| match value {
            protocol::metadata_entry::Value::StringValue(text) => Some(text.as_str()),
            protocol::metadata_entry::Value::BytesValue(_) => None,
        })
    }

    /// The first binary value of `key` (gRPC `-bin` headers).
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.values(key).find_map(|value| match value {
            protocol::metadata_entry::Value::BytesValue(bytes) => Some(bytes.as_ref()),
            protocol::metadata_entry::Value::StringValue(_) => None,
        })
    }

    /// Every entry, in the order the proxy sent them.
    pub fn entries(&self) -> &[protocol::MetadataEntry] {
        &self.entries
    }

    fn values<'a, 'k>(
        &'a self,
        key: &'k str,
    ) -> impl Iterator<Item = &'a protocol::metadata_entry::Value> + use<'a, 'k> {
        self.entries
            .iter()
            .filter(move |entry| entry.key.eq_ignore_ascii_case(key))
            .filter_map(|entry| entry.value.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_pick_the_first_value_of_the_kind() {
        let metadata = Metadata::from_proto(Some(protocol::Metadata {
            entries: vec![
                protocol::MetadataEntry {
                    key: "X-Trace-Bin".into(),
                    value: Some(protocol::metadata_entry::Value::BytesValue(
                        vec![1, 2].into(),
                    )),
                },
                protocol::MetadataEntry {
                    key: "x-user".into(),
                    value: Some(protocol::metadata_entry::Value::StringValue("ann".into())),
                },
                protocol::MetadataEntry {
                    key: "X-User".into(),
                    value: Some(protocol::metadata_entry::Value::StringValue("bob".into())),
                },
                protocol::MetadataEntry {
                    key: "empty".into(),
                    value: None,
                },
            ],
        }));
        assert_eq!(metadata.get("X-USER"), Some("ann"));
        assert_eq!(metadata.get_bytes("x-trace-bin"), Some(&[1u8, 2][..]));
        assert_eq!(metadata.get("x-trace-bin"), None);
        assert_eq!(metadata.get("empty"), None);
        assert_eq!(metadata.get("nope"), None);
        assert_eq!(metadata.entries().len(), 4);
        assert_eq!(Metadata::from_proto(None), Metadata::default());
    }
}

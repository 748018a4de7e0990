//! A total order on `Any`, for deterministic output.

use std::cmp::Ordering;

use cloudstate_protocol::Any;

/// Orders by type URL, then by value bytes: the identity of an element or key.
pub(crate) fn cmp(a: &Any, b: &Any) -> Ordering {
    (a.type_url.as_str(), &a.value[..]).cmp(&(b.type_url.as_str(), &b.value[..]))
}

/// The values, cloned and sorted by [`cmp`].
pub(crate) fn sorted<'a>(values: impl IntoIterator<Item = &'a Any>) -> Vec<Any> {
    let mut sorted: Vec<Any> = values.into_iter().cloned().collect();
    sorted.sort_by(cmp);
    sorted
}

//! `CrdtDelta`s, written briefly: to start a [`CrdtTestKit`](super::CrdtTestKit) with a
//! state, to deliver changes from elsewhere, and to compare with the deltas an entity sends.
//!
//! Elements and keys are anything [`ToAny`] (`&str` for `p.cloudstate.io/string`, a
//! protobuf message, ...). Lists are put in the order of the SDK's deltas (elements and keys
//! by type URL, then encoded bytes), so a delta written here equals the one an entity sends
//! whatever the order it is written in.
//!
//! ```
//! use cloudstate::testkit::deltas;
//!
//! let added = deltas::orset(false, &[], &["a", "b"]);
//! let map = deltas::ormap(false, &["gone"], &[], &[("new", deltas::pncounter(0))]);
//! # let _ = (added, map);
//! ```

use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{
    CrdtDelta, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta, OrMapEntryDelta,
    OrSetDelta, PnCounterDelta, VoteDelta,
};

use cloudstate_protocol::Any;

use crate::crdt::{Clock, ToAny, any_order};

fn delta(delta: D) -> CrdtDelta {
    CrdtDelta { delta: Some(delta) }
}

fn anys<Q: ToAny + ?Sized>(values: &[&Q]) -> Vec<Any> {
    let mut anys: Vec<Any> = values.iter().map(|value| value.to_any()).collect();
    anys.sort_by(any_order);
    anys
}

/// A GCounter that went up by `increment`.
pub fn gcounter(increment: u64) -> CrdtDelta {
    delta(D::Gcounter(GCounterDelta { increment }))
}

/// A PNCounter that changed by `change`.
pub fn pncounter(change: i64) -> CrdtDelta {
    delta(D::Pncounter(PnCounterDelta { change }))
}

/// A GSet that gained `added`.
pub fn gset<Q: ToAny + ?Sized>(added: &[&Q]) -> CrdtDelta {
    delta(D::Gset(GSetDelta { added: anys(added) }))
}

/// An ORSet that was `cleared` (if so), then lost `removed` and gained `added`.
pub fn orset<Q: ToAny + ?Sized>(cleared: bool, removed: &[&Q], added: &[&Q]) -> CrdtDelta {
    delta(D::Orset(OrSetDelta {
        cleared,
        removed: anys(removed),
        added: anys(added),
    }))
}

/// An LWWRegister written with `value` and the default clock.
pub fn lww<Q: ToAny + ?Sized>(value: &Q) -> CrdtDelta {
    lww_with_clock(value, Clock::Default)
}

/// An LWWRegister written with `value` and `clock`.
pub fn lww_with_clock<Q: ToAny + ?Sized>(value: &Q, clock: Clock) -> CrdtDelta {
    let (clock, custom_clock_value) = clock.into_proto();
    delta(D::Lwwregister(LwwRegisterDelta {
        value: Some(value.to_any()),
        clock: clock.into(),
        custom_clock_value,
    }))
}

/// A Flag that is `value` (a user function only ever sends `true`).
pub fn flag(value: bool) -> CrdtDelta {
    delta(D::Flag(FlagDelta { value }))
}

/// A Vote: the proxy sends all three numbers; a user function sends only its own vote, with
/// `votes_for` and `total_voters` 0.
pub fn vote(self_vote: bool, votes_for: i32, total_voters: i32) -> CrdtDelta {
    delta(D::Vote(VoteDelta {
        self_vote,
        votes_for,
        total_voters,
    }))
}

/// An ORMap that was `cleared` (if so), then lost the keys `removed`, changed the values of
/// `updated` by their deltas, and gained `added` with their values' full deltas.
pub fn ormap<Q: ToAny + ?Sized>(
    cleared: bool,
    removed: &[&Q],
    updated: &[(&Q, CrdtDelta)],
    added: &[(&Q, CrdtDelta)],
) -> CrdtDelta {
    let entries = |entries: &[(&Q, CrdtDelta)]| {
        let mut entries: Vec<(Any, &CrdtDelta)> = entries
            .iter()
            .map(|(key, delta)| (key.to_any(), delta))
            .collect();
        entries.sort_by(|(a, _), (b, _)| any_order(a, b));
        entries
            .into_iter()
            .map(|(key, delta)| OrMapEntryDelta {
                key: Some(key),
                delta: Some(delta.clone()),
            })
            .collect()
    };
    delta(D::Ormap(OrMapDelta {
        cleared,
        removed: anys(removed),
        updated: entries(updated),
        added: entries(added),
    }))
}

//! The deltas between the SDK and the proxy.
//!
//! - Outgoing ([`outgoing`]): the net delta of a handler's changes, `View::delta_since` of the
//!   state after the handler against the state before, adjusted by the operations the handler
//!   did ([`Edits`]) where the net difference does not show them: a set or map that was cleared
//!   says `cleared` (and lists what it holds now); a map key that was removed and added again
//!   is removed and added with its whole new value; a register write carries its clock (and is
//!   sent even when the value did not change). A vote sends only `self_vote`. Map entries are
//!   sorted by key.
//! - Incoming ([`received`], [`apply_received`]): deltas from the proxy (`init.delta`, `delta`)
//!   change the state as the proxy's value changed; they are never echoed back.

use cloudstate_crdt::{CrdtError, CrdtKind, View, VoteTally};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{CrdtDelta, LwwRegisterDelta, OrMapDelta, OrMapEntryDelta};

use super::types::{Clock, any_order};

/// An operation on the value at a path (the ORMap keys leading to it) whose effect the net
/// difference does not show.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// The set or map was cleared.
    Cleared,
    /// The map entry was removed (and may have been added again).
    Removed,
    /// The register was written with this clock.
    Written(Clock),
}

/// The operations of one handler that the outgoing delta must show, in order.
#[derive(Debug, Default)]
pub(crate) struct Edits {
    ops: Vec<(Vec<Any>, Op)>,
}

impl Edits {
    /// The set or map at `path` was cleared: what was done below it no longer matters.
    pub(crate) fn cleared(&mut self, path: &[Any]) {
        self.ops
            .retain(|(p, _)| !(p.len() > path.len() && p.starts_with(path)));
        self.ops.push((path.to_vec(), Op::Cleared));
    }

    /// The map entry at `path` was removed: what was done to it no longer matters.
    pub(crate) fn removed(&mut self, path: Vec<Any>) {
        self.ops.retain(|(p, _)| !p.starts_with(&path));
        self.ops.push((path, Op::Removed));
    }

    /// The register at `path` was written with `clock`; the last write counts.
    pub(crate) fn written(&mut self, path: &[Any], clock: Clock) {
        if let Some((last, Op::Written(_))) = self.ops.last()
            && last == path
        {
            self.ops.pop();
        }
        self.ops.push((path.to_vec(), Op::Written(clock)));
    }
}

/// The delta that tells the proxy how the state went from `before` (`None`: the entity had no
/// state, the handler created it) to `after`, with the operations of `edits`; `None` when
/// there is nothing to tell.
///
/// # Errors
///
/// [`CrdtError::Incompatible`] when the change cannot be a delta (a `PNCounter` that moved by
/// more than a `sint64`).
pub(crate) fn outgoing(
    before: Option<&View>,
    after: &View,
    edits: &Edits,
) -> Result<Option<CrdtDelta>, CrdtError> {
    let empty;
    let base = match before {
        Some(before) => before,
        None => {
            empty = View::empty(after.kind());
            &empty
        }
    };
    let mut delta = after.delta_since(base)?;
    // A state created by this handler goes as a whole: nothing in it needs `cleared`.
    let created = before.is_none();
    for (path, op) in &edits.ops {
        match op {
            Op::Cleared => at_path(
                &mut delta,
                after,
                path,
                created,
                &mut |delta, value, fresh| {
                    if !fresh {
                        *delta = Some(cleared(value));
                    }
                },
            ),
            Op::Written(clock) => {
                at_path(&mut delta, after, path, created, &mut |delta, value, _| {
                    written(delta, value, *clock);
                })
            }
            Op::Removed => {
                if let Some((key, map)) = path.split_last() {
                    at_path(
                        &mut delta,
                        after,
                        map,
                        created,
                        &mut |delta, value, fresh| {
                            if !fresh {
                                replaced(delta, value, key);
                            }
                        },
                    );
                }
            }
        }
    }
    if let Some(delta) = &mut delta {
        normalize(delta);
    }
    Ok(delta)
}

/// A change to the delta of one value: the delta (`None`: unchanged so far), the value now, and
/// whether the delta is the value's full state (it is new: in a map's `added`, or created).
type Fixup<'f> = &'f mut dyn FnMut(&mut Option<CrdtDelta>, &View, bool);

/// Runs `fixup` on the delta of the value at `path` in `value`, whose delta is `delta`,
/// making room for it in the map deltas on the way (an `updated` entry, kept only if the fixup
/// sets a delta). Nothing happens when the path no longer leads to a value.
fn at_path(
    delta: &mut Option<CrdtDelta>,
    value: &View,
    path: &[Any],
    fresh: bool,
    fixup: Fixup<'_>,
) {
    let Some((key, rest)) = path.split_first() else {
        return fixup(delta, value, fresh);
    };
    let View::ORMap(entries) = value else {
        return;
    };
    let Some(child) = entries.get(key) else {
        return;
    };
    let made = delta.is_none();
    if made {
        if fresh {
            return;
        }
        *delta = Some(ormap(OrMapDelta::default()));
    }
    let Some(CrdtDelta {
        delta: Some(D::Ormap(map)),
    }) = delta.as_mut()
    else {
        return;
    };
    let is_key = |entry: &&mut OrMapEntryDelta| entry.key.as_ref() == Some(key);
    if let Some(entry) = map.added.iter_mut().find(is_key) {
        at_path(&mut entry.delta, child, rest, true, fixup);
    } else if let Some(entry) = map.updated.iter_mut().find(is_key) {
        at_path(&mut entry.delta, child, rest, false, fixup);
    } else if !fresh {
        let mut nested = None;
        at_path(&mut nested, child, rest, false, fixup);
        if nested.is_some() {
            map.updated.push(OrMapEntryDelta {
                key: Some(key.clone()),
                delta: nested,
            });
        }
    }
    if made && *map == OrMapDelta::default() {
        *delta = None;
    }
}

fn ormap(map: OrMapDelta) -> CrdtDelta {
    CrdtDelta {
        delta: Some(D::Ormap(map)),
    }
}

/// The delta of a set or map that was cleared and now holds `value`.
fn cleared(value: &View) -> CrdtDelta {
    let mut delta = value.full_delta();
    match &mut delta.delta {
        Some(D::Orset(set)) => set.cleared = true,
        Some(D::Ormap(map)) => map.cleared = true,
        _ => {}
    }
    delta
}

/// Makes `delta` the write of the register `value` with `clock`.
fn written(delta: &mut Option<CrdtDelta>, value: &View, clock: Clock) {
    let View::LWWRegister(written) = value else {
        return;
    };
    let (clock, custom_clock_value) = clock.into_proto();
    *delta = Some(CrdtDelta {
        delta: Some(D::Lwwregister(LwwRegisterDelta {
            value: Some(written.clone()),
            clock: clock.into(),
            custom_clock_value,
        })),
    });
}

/// Makes the delta of the map `value` remove `key` and add it with its whole value, if the
/// map has it.
fn replaced(delta: &mut Option<CrdtDelta>, value: &View, key: &Any) {
    let View::ORMap(entries) = value else {
        return;
    };
    let Some(entry) = entries.get(key) else {
        return;
    };
    if delta.is_none() {
        *delta = Some(ormap(OrMapDelta::default()));
    }
    let Some(CrdtDelta {
        delta: Some(D::Ormap(map)),
    }) = delta
    else {
        return;
    };
    map.updated.retain(|entry| entry.key.as_ref() != Some(key));
    map.added.retain(|entry| entry.key.as_ref() != Some(key));
    if !map.cleared && !map.removed.contains(key) {
        map.removed.push(key.clone());
    }
    map.added.push(OrMapEntryDelta {
        key: Some(key.clone()),
        delta: Some(entry.full_delta()),
    });
}

/// Votes send only `self_vote` (the proxy counts); map entries are sorted by key.
fn normalize(delta: &mut CrdtDelta) {
    match &mut delta.delta {
        Some(D::Vote(vote)) => {
            vote.votes_for = 0;
            vote.total_voters = 0;
        }
        Some(D::Ormap(map)) => {
            map.removed.sort_by(any_order);
            for entries in [&mut map.updated, &mut map.added] {
                entries.sort_by(|a, b| match (&a.key, &b.key) {
                    (Some(a), Some(b)) => any_order(a, b),
                    (a, b) => a.is_some().cmp(&b.is_some()),
                });
                for entry in entries.iter_mut() {
                    if let Some(nested) = &mut entry.delta {
                        normalize(nested);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The state described by a delta from the proxy to a user function that has none: its type,
/// empty, with the delta applied.
///
/// # Errors
///
/// As [`apply_received`].
pub(crate) fn received(delta: &CrdtDelta) -> Result<View, CrdtError> {
    let mut value = View::empty(CrdtKind::of(delta)?);
    apply_received(&mut value, delta)?;
    Ok(value)
}

/// Applies a delta from the proxy: the value changed elsewhere. Counters add, sets add and
/// remove, a register takes the value, a flag switches on (a `false` changes nothing), a vote
/// takes the whole tally, a map applies `cleared`, then `removed`, `updated` (of keys it has)
/// and `added` (new values).
///
/// # Errors
///
/// [`CrdtError::EmptyDelta`], [`CrdtError::TypeMismatch`] (a delta of another type than the
/// value), [`CrdtError::MissingEntryField`], and what the user function's own deltas may not
/// do either (a GCounter increment of 2⁶³ or more, an unknown clock).
pub(crate) fn apply_received(value: &mut View, delta: &CrdtDelta) -> Result<(), CrdtError> {
    match (&mut *value, &delta.delta) {
        (View::Flag(enabled), Some(D::Flag(flag))) => *enabled |= flag.value,
        (View::Vote(tally), Some(D::Vote(vote))) => {
            *tally = VoteTally {
                self_vote: vote.self_vote,
                votes_for: u32::try_from(vote.votes_for).unwrap_or(0),
                total_voters: u32::try_from(vote.total_voters).unwrap_or(0),
            };
        }
        (View::ORMap(entries), Some(D::Ormap(map))) => {
            if map.cleared {
                entries.clear();
            }
            for key in &map.removed {
                entries.remove(key);
            }
            for entry in &map.updated {
                let (key, nested) = entry_parts(entry)?;
                if let Some(value) = entries.get_mut(key) {
                    apply_received(value, nested)?;
                }
            }
            for entry in &map.added {
                let (key, nested) = entry_parts(entry)?;
                entries.insert(key.clone(), received(nested)?);
            }
        }
        _ => value.apply_user_delta(delta)?,
    }
    Ok(())
}

fn entry_parts(entry: &OrMapEntryDelta) -> Result<(&Any, &CrdtDelta), CrdtError> {
    let key = entry
        .key
        .as_ref()
        .ok_or(CrdtError::MissingEntryField("key"))?;
    let delta = entry
        .delta
        .as_ref()
        .ok_or(CrdtError::MissingEntryField("delta"))?;
    Ok((key, delta))
}

//! The replicated data types of CRDT entities, as the proxy owns them.
//!
//! In the Cloudstate CRDT protocol the user function holds a plain value (a number, a set, a
//! map of plain values) and exchanges deltas with the proxy; the proxy owns the real CRDT,
//! replicates it between its nodes, and tells the user function what changed. This crate is
//! that CRDT, without any I/O: the eight types of the protocol ([`GCounter`], [`PNCounter`],
//! [`GSet`], [`ORSet`], [`LWWRegister`], [`Flag`], [`ORMap`] of any of them, [`Vote`]), the
//! [`Crdt`] an entity holds, and the mapping between it and the protocol's `CrdtDelta`.
//!
//! # Replication: state-based, with deltas
//!
//! Every type is a join-semilattice: [`Crdt::merge`] is commutative, associative and
//! idempotent, so replicas that have merged the same states are equal, whatever the order and
//! however often they merged. Each change made on a replica (its [`ReplicaId`]) is a
//! *delta-mutation*: [`Crdt::apply_user_delta`] computes a small state, the [`Delta`], joins it
//! into the CRDT and returns it; merging that delta into any other replica
//! ([`Crdt::apply_delta`]) brings the change there, in any order, any number of times. A full
//! state is a delta too, for anti-entropy or a node that has nothing yet.
//!
//! - Counters keep a count per replica (joined by maximum); a [`PNCounter`] is two of them.
//! - [`ORSet`] and [`ORMap`] are add-wins observed-remove types: each addition has a *dot*
//!   (replica, n), a removal removes the dots it saw, and a causal context (the dots seen, as
//!   ranges per replica) replaces tombstones. Dots come from one sequence per replica and
//!   entity, nested values included, so they are unique across the entity.
//! - [`LWWRegister`] writes are ordered by (timestamp, replica, value), the timestamp from the
//!   user function's choice of clock; local writes obey the same order as merges.
//! - [`Flag`] is enable-wins; [`Vote`] is a version per voter, odd meaning yes.
//!
//! # The protocol mapping
//!
//! - [`Crdt::from_initial_delta`] / [`Crdt::apply_user_delta`]: the user function's
//!   `CrdtStateAction.update`, following the original proxy's rules: a GCounter cannot go
//!   down, a Flag cannot be switched off, ORSet deltas apply clear → remove → add, ORMap
//!   deltas clear → remove → update → add with updates of missing keys or of another type
//!   ignored, a Vote delta sets only the replica's own vote. Untrusted input never panics; a
//!   refused delta changes nothing and its [`CrdtError`] is meant for the user function.
//! - [`Crdt::view`]: the plain value the user function holds, a [`View`]; its
//!   [`full_delta`](View::full_delta) is `CrdtInit.delta`, and
//!   [`delta_since`](View::delta_since) is the net delta from one view to another (counters
//!   by difference, sets by added and removed elements or `cleared` when shorter, maps key by
//!   key, a vote whole), `None` when nothing the user function sees changed.
//! - [`View::apply_user_delta`]: what the user function does to its own value when it sends a
//!   delta, so the proxy can track what the user function believes.
//!
//! # Hosting an entity
//!
//! The engine keeps, per entity, the `Crdt` (the truth) and the `View` the user function
//! believes in. An update from the user function goes to both (to the `Crdt` first; if it is
//! refused the command fails, and the user function, which already applied its delta, must be
//! restarted with a fresh `CrdtInit`). When no command is outstanding and the truth changed,
//! the engine sends `crdt.view(replica).delta_since(&belief)` and adopts the new view as the
//! belief. That view may differ from the belief because of replicated changes, and also when a
//! write lost locally: an LWW write whose clock is below the current one, or an ORMap add of a
//! key that another replica had added meanwhile. A [`CrdtError::Incompatible`] difference
//! cannot be sent as a delta: the engine restarts the user function with the full state.

#![warn(missing_docs)]

mod any;
mod clock;
mod counter;
mod error;
mod flag;
mod map;
mod register;
mod replica;
mod set;
mod view;
mod vote;

use std::fmt;

use cloudstate_protocol::crdt::CrdtDelta;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;

pub use clock::{Clock, SystemClock};
pub use counter::{GCounter, PNCounter};
pub use error::CrdtError;
pub use flag::Flag;
pub use map::ORMap;
pub use register::LWWRegister;
pub use replica::ReplicaId;
pub use set::{GSet, ORSet};
pub use view::View;
pub use vote::{Vote, VoteTally};

use replica::DotAllocator;

/// The eight CRDT types of the protocol, in the order of the `CrdtDelta` oneof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrdtKind {
    /// [`GCounter`].
    GCounter,
    /// [`PNCounter`].
    PNCounter,
    /// [`GSet`].
    GSet,
    /// [`ORSet`].
    ORSet,
    /// [`LWWRegister`].
    LWWRegister,
    /// [`Flag`].
    Flag,
    /// [`ORMap`].
    ORMap,
    /// [`Vote`].
    Vote,
}

impl CrdtKind {
    /// The type a delta is of; [`CrdtError::EmptyDelta`] when it sets none.
    pub fn of(delta: &CrdtDelta) -> Result<CrdtKind, CrdtError> {
        Ok(match delta.delta.as_ref().ok_or(CrdtError::EmptyDelta)? {
            D::Gcounter(_) => CrdtKind::GCounter,
            D::Pncounter(_) => CrdtKind::PNCounter,
            D::Gset(_) => CrdtKind::GSet,
            D::Orset(_) => CrdtKind::ORSet,
            D::Lwwregister(_) => CrdtKind::LWWRegister,
            D::Flag(_) => CrdtKind::Flag,
            D::Ormap(_) => CrdtKind::ORMap,
            D::Vote(_) => CrdtKind::Vote,
        })
    }

    /// The type's name, as the protocol's documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            CrdtKind::GCounter => "GCounter",
            CrdtKind::PNCounter => "PNCounter",
            CrdtKind::GSet => "GSet",
            CrdtKind::ORSet => "ORSet",
            CrdtKind::LWWRegister => "LWWRegister",
            CrdtKind::Flag => "Flag",
            CrdtKind::ORMap => "ORMap",
            CrdtKind::Vote => "Vote",
        }
    }
}

impl fmt::Display for CrdtKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The state of a CRDT entity: one of the eight types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Crdt {
    /// A grow-only counter.
    GCounter(GCounter),
    /// A counter that goes both ways.
    PNCounter(PNCounter),
    /// A grow-only set.
    GSet(GSet),
    /// An add-wins observed-remove set.
    ORSet(ORSet),
    /// A last-writer-wins register.
    LWWRegister(LWWRegister),
    /// An enable-wins flag.
    Flag(Flag),
    /// An add-wins observed-remove map of CRDTs.
    ORMap(ORMap),
    /// A vote per replica.
    Vote(Vote),
}

impl Crdt {
    /// The bottom of `kind`: zero, empty, disabled, unwritten, nobody voted.
    pub fn empty(kind: CrdtKind) -> Crdt {
        match kind {
            CrdtKind::GCounter => Crdt::GCounter(GCounter::default()),
            CrdtKind::PNCounter => Crdt::PNCounter(PNCounter::default()),
            CrdtKind::GSet => Crdt::GSet(GSet::default()),
            CrdtKind::ORSet => Crdt::ORSet(ORSet::default()),
            CrdtKind::LWWRegister => Crdt::LWWRegister(LWWRegister::default()),
            CrdtKind::Flag => Crdt::Flag(Flag::default()),
            CrdtKind::ORMap => Crdt::ORMap(ORMap::default()),
            CrdtKind::Vote => Crdt::Vote(Vote::default()),
        }
    }

    /// The type of this CRDT.
    pub fn kind(&self) -> CrdtKind {
        match self {
            Crdt::GCounter(_) => CrdtKind::GCounter,
            Crdt::PNCounter(_) => CrdtKind::PNCounter,
            Crdt::GSet(_) => CrdtKind::GSet,
            Crdt::ORSet(_) => CrdtKind::ORSet,
            Crdt::LWWRegister(_) => CrdtKind::LWWRegister,
            Crdt::Flag(_) => CrdtKind::Flag,
            Crdt::ORMap(_) => CrdtKind::ORMap,
            Crdt::Vote(_) => CrdtKind::Vote,
        }
    }

    /// The CRDT a user function creates with its first update of an entity that does not
    /// exist yet: the delta's type, empty, with the delta applied; and the replication delta.
    pub fn from_initial_delta(
        replica: &ReplicaId,
        delta: &CrdtDelta,
        clock: &dyn Clock,
    ) -> Result<(Crdt, Delta), CrdtError> {
        let mut crdt = Crdt::empty(CrdtKind::of(delta)?);
        let delta = crdt.apply_user_delta(replica, delta, clock)?;
        Ok((crdt, delta))
    }

    /// Applies the user function's `delta` as a change made on `replica`, and returns the
    /// replication delta: merged into any replica, it brings this change there.
    ///
    /// `clock` is read for `LWWRegister` deltas with the `DEFAULT` or `REVERSE` clock. On
    /// error nothing changed. Errors: [`CrdtError::EmptyDelta`], [`CrdtError::TypeMismatch`]
    /// (a delta of another type than the CRDT), [`CrdtError::NegativeIncrement`],
    /// [`CrdtError::Overflow`], [`CrdtError::FlagDisable`], [`CrdtError::UnknownClock`],
    /// [`CrdtError::MissingEntryField`], and [`CrdtError::InEntry`] for an ORMap entry.
    pub fn apply_user_delta(
        &mut self,
        replica: &ReplicaId,
        delta: &CrdtDelta,
        clock: &dyn Clock,
    ) -> Result<Delta, CrdtError> {
        let mut dots = DotAllocator::after(replica, self.max_counter(replica));
        let change = self.mutation(delta, &mut dots, clock)?;
        self.join(&change);
        Ok(Delta(change))
    }

    /// Merges `other` in. For two CRDTs of the same type the merge is commutative,
    /// associative and idempotent; two types never merge ([`CrdtError::TypeMismatch`], and
    /// nothing changed).
    pub fn merge(&mut self, other: &Crdt) -> Result<(), CrdtError> {
        if self.kind() != other.kind() {
            return Err(CrdtError::TypeMismatch {
                expected: self.kind(),
                found: other.kind(),
            });
        }
        self.join(other);
        Ok(())
    }

    /// Merges a replication delta in: [`merge`](Crdt::merge) with its laws, so deltas may
    /// come in any order, and more than once.
    pub fn apply_delta(&mut self, delta: &Delta) -> Result<(), CrdtError> {
        self.merge(&delta.0)
    }

    /// The delta (a state of the same type) of the user function's `delta`, against this
    /// state, with new dots from `dots`.
    pub(crate) fn mutation(
        &self,
        delta: &CrdtDelta,
        dots: &mut DotAllocator,
        clock: &dyn Clock,
    ) -> Result<Crdt, CrdtError> {
        let found = CrdtKind::of(delta)?;
        let replica = dots.replica();
        Ok(match (self, &delta.delta) {
            (Crdt::GCounter(c), Some(D::Gcounter(d))) => {
                Crdt::GCounter(c.mutation(replica, d.increment)?)
            }
            (Crdt::PNCounter(c), Some(D::Pncounter(d))) => {
                Crdt::PNCounter(c.mutation(replica, d.change)?)
            }
            (Crdt::GSet(s), Some(D::Gset(d))) => Crdt::GSet(s.mutation(&d.added)),
            (Crdt::ORSet(s), Some(D::Orset(d))) => Crdt::ORSet(s.mutation(d, dots)),
            (Crdt::LWWRegister(r), Some(D::Lwwregister(d))) => {
                Crdt::LWWRegister(r.mutation(replica, d, clock)?)
            }
            (Crdt::Flag(f), Some(D::Flag(d))) => Crdt::Flag(f.mutation(d.value)?),
            (Crdt::ORMap(m), Some(D::Ormap(d))) => Crdt::ORMap(m.mutation(d, dots, clock)?),
            (Crdt::Vote(v), Some(D::Vote(d))) => Crdt::Vote(v.mutation(replica, d.self_vote)?),
            _ => {
                return Err(CrdtError::TypeMismatch {
                    expected: self.kind(),
                    found,
                });
            }
        })
    }

    /// The join of two CRDTs of any types: the same type's merge, or else the value of the
    /// type that comes later in [`CrdtKind`] (an ordinal sum of the types' lattices, so still
    /// commutative, associative and idempotent). State merges only ever join values of one
    /// type; an ORMap key's live incarnations may hold two, and this picks its value.
    pub(crate) fn join(&mut self, other: &Crdt) {
        match (&mut *self, other) {
            (Crdt::GCounter(a), Crdt::GCounter(b)) => a.merge(b),
            (Crdt::PNCounter(a), Crdt::PNCounter(b)) => a.merge(b),
            (Crdt::GSet(a), Crdt::GSet(b)) => a.merge(b),
            (Crdt::ORSet(a), Crdt::ORSet(b)) => a.merge(b),
            (Crdt::LWWRegister(a), Crdt::LWWRegister(b)) => a.merge(b),
            (Crdt::Flag(a), Crdt::Flag(b)) => a.merge(b),
            (Crdt::ORMap(a), Crdt::ORMap(b)) => a.merge(b),
            (Crdt::Vote(a), Crdt::Vote(b)) => a.merge(b),
            (a, b) => {
                if b.kind() > a.kind() {
                    *a = b.clone();
                }
            }
        }
    }

    /// The greatest dot counter of `replica` anywhere in this CRDT.
    fn max_counter(&self, replica: &ReplicaId) -> u64 {
        match self {
            Crdt::ORSet(s) => s.max_counter(replica),
            Crdt::ORMap(m) => m.max_counter(replica),
            _ => 0,
        }
    }
}

/// A replication delta: a small CRDT state that carries one or more changes.
///
/// Merging a delta into a replica ([`Crdt::apply_delta`]) is a [`Crdt::merge`], so deltas may
/// be applied in any order and any number of times; deltas merge into each other
/// ([`Delta::merge`]) to be sent as one. A delta merged into nothing is its own state
/// ([`Delta::into_crdt`]), and a full state is a delta (`Delta::from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta(Crdt);

impl Delta {
    /// The CRDT type the delta is of.
    pub fn kind(&self) -> CrdtKind {
        self.0.kind()
    }

    /// Merges `other` into this delta, so that the result carries the changes of both.
    /// Deltas of different types do not merge ([`CrdtError::TypeMismatch`]).
    pub fn merge(&mut self, other: &Delta) -> Result<(), CrdtError> {
        self.0.merge(&other.0)
    }

    /// The state of a replica that had nothing and received this delta.
    pub fn into_crdt(self) -> Crdt {
        self.0
    }
}

impl From<Crdt> for Delta {
    fn from(state: Crdt) -> Self {
        Delta(state)
    }
}

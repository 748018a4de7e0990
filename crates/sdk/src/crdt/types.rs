//! The eight CRDT types as typed handles on the entity's state: [`GCounter`], [`PnCounter`],
//! [`GSet`], [`OrSet`], [`LwwRegister`], [`Flag`], [`OrMap`] and [`Vote`].
//!
//! A handle borrows the plain value the SDK keeps (a [`View`]) and changes it in place; the SDK
//! works out the net delta for the proxy when the handler returns. Operations whose effect a
//! net difference cannot show (a clear, a register write with a clock, a map key removed and
//! added again) are also recorded, so the delta says what the handler did.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

use cloudstate_crdt::{CrdtKind, View, VoteTally};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::CrdtClock;
use tonic::Code;

use super::delta::Edits;
use super::value::{CrdtValue, FromAny, ToAny};
use crate::Failure;

/// One of the eight CRDT types of the protocol, for the typed accessors of the contexts
/// ([`CrdtContext::state`](super::CrdtContext::state) and its siblings) and for the values of
/// an [`OrMap`].
///
/// Name the type in a turbofish without its lifetime: `ctx.state::<GCounter>()` returns a
/// `GCounter<'_>` borrowing the context, `ctx.state::<OrMap<String, OrSet<String>>>()` an
/// `OrMap<'_, String, OrSet<String>>`. (The lifetime of the type named does not matter; a type
/// alias may say `'static`: `type Counters = OrMap<'static, String, PnCounter<'static>>;`.)
/// Implemented by the eight handle types only.
pub trait Crdt: Sealed {
    /// The handle, borrowing the state for `'a`.
    type Handle<'a>;
    /// The plain value, decoded: `u64` for a [`GCounter`], `Vec<T>` for an [`OrSet<T>`], ...
    type Value;

    /// The protocol's type.
    #[doc(hidden)]
    const KIND: CrdtKind;

    /// The handle on `view`; `None` when `view` is of another type.
    #[doc(hidden)]
    fn handle<'a>(view: &'a mut View, scope: Scope<'a>) -> Option<Self::Handle<'a>>;

    /// The decoded value of `view`.
    #[doc(hidden)]
    fn value(view: &View) -> Result<Self::Value, Failure>;
}

/// Keeps [`Crdt`] implemented by this module's types only.
pub trait Sealed {}

/// Where a handle sits in the entity's state, and the record of the operations done through
/// it (not part of the API).
#[doc(hidden)]
pub struct Scope<'a> {
    edits: &'a mut Edits,
    /// The ORMap keys leading from the entity's state to the handle's value.
    path: Vec<Any>,
}

impl<'a> Scope<'a> {
    /// The scope of the entity's whole state.
    pub(crate) fn root(edits: &'a mut Edits) -> Self {
        Scope {
            edits,
            path: Vec::new(),
        }
    }

    /// The scope of the value under `key` of the map this scope is of.
    fn child(&mut self, key: Any) -> Scope<'_> {
        let mut path = self.path.clone();
        path.push(key);
        Scope {
            edits: self.edits,
            path,
        }
    }
}

/// The failure of a handler that reads a CRDT as another type than it is
/// (`FAILED_PRECONDITION`: typically a client chose a key that holds another type).
pub(crate) fn mismatch(found: CrdtKind, expected: CrdtKind) -> Failure {
    Failure::new(format!(
        "the entity's state holds a {found} where a {expected} was expected"
    ))
    .with_code(Code::FailedPrecondition)
}

/// Decodes an element, key or value of a CRDT as `T`; `what` names it for the failure.
fn decode<T: FromAny>(any: &Any, what: &str) -> Result<T, Failure> {
    T::from_any(any).map_err(|error| {
        Failure::new(format!("cannot read {what} of the entity's CRDT: {error}"))
            .with_code(Code::Internal)
    })
}

/// Orders `Any`s by type URL and bytes, the order of the SDK's deltas and decoded values.
pub(crate) fn any_order(a: &Any, b: &Any) -> Ordering {
    (a.type_url.as_str(), &a.value[..]).cmp(&(b.type_url.as_str(), &b.value[..]))
}

/// The elements of a set, decoded, in [`any_order`].
fn decode_elements<T: FromAny>(elements: &HashSet<Any>) -> Result<Vec<T>, Failure> {
    let mut sorted: Vec<&Any> = elements.iter().collect();
    sorted.sort_by(|a, b| any_order(a, b));
    sorted
        .into_iter()
        .map(|element| decode(element, "an element"))
        .collect()
}

/// A grow-only counter.
#[derive(Debug)]
pub struct GCounter<'a> {
    value: &'a mut u64,
}

impl GCounter<'_> {
    /// The counter's value.
    pub fn value(&self) -> u64 {
        *self.value
    }

    /// Adds `by` (saturating at `u64::MAX`) and returns the new value. The proxy refuses a
    /// net increment of 2⁶³ or more in one reply.
    pub fn increment(&mut self, by: u64) -> u64 {
        *self.value = self.value.saturating_add(by);
        *self.value
    }
}

impl Sealed for GCounter<'_> {}

impl Crdt for GCounter<'_> {
    type Handle<'a> = GCounter<'a>;
    type Value = u64;
    const KIND: CrdtKind = CrdtKind::GCounter;

    fn handle<'a>(view: &'a mut View, _: Scope<'a>) -> Option<GCounter<'a>> {
        match view {
            View::GCounter(value) => Some(GCounter { value }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<u64, Failure> {
        match view {
            View::GCounter(value) => Ok(*value),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// A counter that goes up and down.
#[derive(Debug)]
pub struct PnCounter<'a> {
    value: &'a mut i64,
}

impl PnCounter<'_> {
    /// The counter's value.
    pub fn value(&self) -> i64 {
        *self.value
    }

    /// Adds `by` (which may be negative; saturating) and returns the new value.
    pub fn increment(&mut self, by: i64) -> i64 {
        *self.value = self.value.saturating_add(by);
        *self.value
    }

    /// Subtracts `by` (saturating) and returns the new value.
    pub fn decrement(&mut self, by: i64) -> i64 {
        *self.value = self.value.saturating_sub(by);
        *self.value
    }
}

impl Sealed for PnCounter<'_> {}

impl Crdt for PnCounter<'_> {
    type Handle<'a> = PnCounter<'a>;
    type Value = i64;
    const KIND: CrdtKind = CrdtKind::PNCounter;

    fn handle<'a>(view: &'a mut View, _: Scope<'a>) -> Option<PnCounter<'a>> {
        match view {
            View::PNCounter(value) => Some(PnCounter { value }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<i64, Failure> {
        match view {
            View::PNCounter(value) => Ok(*value),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// A grow-only set of `T`s.
#[derive(Debug)]
pub struct GSet<'a, T> {
    elements: &'a mut HashSet<Any>,
    element: PhantomData<fn() -> T>,
}

impl<T: CrdtValue> GSet<'_, T> {
    /// How many elements the set has.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the set has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Whether `element` is in the set.
    pub fn contains<Q: ToAny + ?Sized>(&self, element: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.elements.contains(&element.to_any())
    }

    /// Adds `element`; returns whether it was new.
    pub fn add<Q: ToAny + ?Sized>(&mut self, element: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.elements.insert(element.to_any())
    }

    /// The elements, decoded, ordered by their encoding.
    ///
    /// # Errors
    ///
    /// A failure (`INTERNAL`) when an element is not a `T`.
    pub fn elements(&self) -> Result<Vec<T>, Failure> {
        decode_elements(self.elements)
    }
}

impl<T> Sealed for GSet<'_, T> {}

impl<T: CrdtValue> Crdt for GSet<'_, T> {
    type Handle<'a> = GSet<'a, T>;
    type Value = Vec<T>;
    const KIND: CrdtKind = CrdtKind::GSet;

    fn handle<'a>(view: &'a mut View, _: Scope<'a>) -> Option<GSet<'a, T>> {
        match view {
            View::GSet(elements) => Some(GSet {
                elements,
                element: PhantomData,
            }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<Vec<T>, Failure> {
        match view {
            View::GSet(elements) => decode_elements(elements),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// An observed-remove set of `T`s: elements come and go; an addition concurrent with a
/// removal elsewhere wins.
pub struct OrSet<'a, T> {
    elements: &'a mut HashSet<Any>,
    scope: Scope<'a>,
    element: PhantomData<fn() -> T>,
}

impl<T: CrdtValue> OrSet<'_, T> {
    /// How many elements the set has.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the set has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Whether `element` is in the set.
    pub fn contains<Q: ToAny + ?Sized>(&self, element: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.elements.contains(&element.to_any())
    }

    /// Adds `element`; returns whether it was new.
    pub fn add<Q: ToAny + ?Sized>(&mut self, element: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.elements.insert(element.to_any())
    }

    /// Removes `element`; returns whether it was there.
    pub fn remove<Q: ToAny + ?Sized>(&mut self, element: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.elements.remove(&element.to_any())
    }

    /// Removes every element. The delta says `cleared` (followed by what was added after).
    pub fn clear(&mut self) {
        if !self.elements.is_empty() {
            self.elements.clear();
            self.scope.edits.cleared(&self.scope.path);
        }
    }

    /// The elements, decoded, ordered by their encoding.
    ///
    /// # Errors
    ///
    /// A failure (`INTERNAL`) when an element is not a `T`.
    pub fn elements(&self) -> Result<Vec<T>, Failure> {
        decode_elements(self.elements)
    }
}

impl<T> Sealed for OrSet<'_, T> {}

impl<T: CrdtValue> Crdt for OrSet<'_, T> {
    type Handle<'a> = OrSet<'a, T>;
    type Value = Vec<T>;
    const KIND: CrdtKind = CrdtKind::ORSet;

    fn handle<'a>(view: &'a mut View, scope: Scope<'a>) -> Option<OrSet<'a, T>> {
        match view {
            View::ORSet(elements) => Some(OrSet {
                elements,
                scope,
                element: PhantomData,
            }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<Vec<T>, Failure> {
        match view {
            View::ORSet(elements) => decode_elements(elements),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// The clock that orders the writes of an [`LwwRegister`]: the last write wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The proxy's wall clock.
    #[default]
    Default,
    /// The reverse of the proxy's wall clock: the first write wins.
    Reverse,
    /// This value is the write's clock.
    Custom(i64),
    /// This value is the write's clock, raised to just above the register's current clock
    /// when it is not above it already.
    CustomAutoIncrement(i64),
}

impl Clock {
    /// The protocol's clock and custom clock value.
    pub(crate) fn into_proto(self) -> (CrdtClock, i64) {
        match self {
            Clock::Default => (CrdtClock::Default, 0),
            Clock::Reverse => (CrdtClock::Reverse, 0),
            Clock::Custom(value) => (CrdtClock::Custom, value),
            Clock::CustomAutoIncrement(value) => (CrdtClock::CustomAutoIncrement, value),
        }
    }
}

/// A last-writer-wins register holding a `T`.
///
/// A new register holds nothing ([`get`](Self::get) is `None`) until its first write. Every
/// write goes to the proxy with its clock, even when it writes the value the register holds.
pub struct LwwRegister<'a, T> {
    value: &'a mut Any,
    scope: Scope<'a>,
    element: PhantomData<fn() -> T>,
}

impl<T: CrdtValue> LwwRegister<'_, T> {
    /// The value; `None` before the first write.
    ///
    /// # Errors
    ///
    /// A failure (`INTERNAL`) when the value is not a `T`.
    pub fn get(&self) -> Result<Option<T>, Failure> {
        register_value(self.value)
    }

    /// Writes `value` with the [default clock](Clock::Default).
    pub fn set<Q: ToAny + ?Sized>(&mut self, value: &Q)
    where
        T: Borrow<Q>,
    {
        self.set_with_clock(value, Clock::Default);
    }

    /// Writes `value` with `clock`.
    pub fn set_with_clock<Q: ToAny + ?Sized>(&mut self, value: &Q, clock: Clock)
    where
        T: Borrow<Q>,
    {
        *self.value = value.to_any();
        self.scope.edits.written(&self.scope.path, clock);
    }
}

fn register_value<T: FromAny>(value: &Any) -> Result<Option<T>, Failure> {
    if value.type_url.is_empty() {
        return Ok(None);
    }
    decode(value, "the register's value").map(Some)
}

impl<T> Sealed for LwwRegister<'_, T> {}

impl<T: CrdtValue> Crdt for LwwRegister<'_, T> {
    type Handle<'a> = LwwRegister<'a, T>;
    type Value = Option<T>;
    const KIND: CrdtKind = CrdtKind::LWWRegister;

    fn handle<'a>(view: &'a mut View, scope: Scope<'a>) -> Option<LwwRegister<'a, T>> {
        match view {
            View::LWWRegister(value) => Some(LwwRegister {
                value,
                scope,
                element: PhantomData,
            }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<Option<T>, Failure> {
        match view {
            View::LWWRegister(value) => register_value(value),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// A flag that can be switched on, never off.
#[derive(Debug)]
pub struct Flag<'a> {
    enabled: &'a mut bool,
}

impl Flag<'_> {
    /// Whether the flag is on.
    pub fn is_enabled(&self) -> bool {
        *self.enabled
    }

    /// Switches the flag on.
    pub fn enable(&mut self) {
        *self.enabled = true;
    }
}

impl Sealed for Flag<'_> {}

impl Crdt for Flag<'_> {
    type Handle<'a> = Flag<'a>;
    type Value = bool;
    const KIND: CrdtKind = CrdtKind::Flag;

    fn handle<'a>(view: &'a mut View, _: Scope<'a>) -> Option<Flag<'a>> {
        match view {
            View::Flag(enabled) => Some(Flag { enabled }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<bool, Failure> {
        match view {
            View::Flag(enabled) => Ok(*enabled),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// An observed-remove map from `K` to CRDTs of type `V` (any of the eight, maps included).
///
/// Adding a key ([`get_or_create`](Self::get_or_create)) gives it `V`'s initial value (zero,
/// empty, unwritten, off, no vote); the handle it returns changes that value in place. `V` is
/// checked value by value, so a map whose values are of several types is read with the `V` of
/// the key at hand (`ctx.state::<OrMap<String, Flag>>()?` for one key, `OrMap<String,
/// GCounter>` for another).
pub struct OrMap<'a, K, V> {
    entries: &'a mut HashMap<Any, View>,
    scope: Scope<'a>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: CrdtValue, V: Crdt> OrMap<'_, K, V> {
    /// How many entries the map has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the map has an entry for `key`.
    pub fn contains_key<Q: ToAny + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.entries.contains_key(&key.to_any())
    }

    /// The keys, decoded, ordered by their encoding.
    ///
    /// # Errors
    ///
    /// A failure (`INTERNAL`) when a key is not a `K`.
    pub fn keys(&self) -> Result<Vec<K>, Failure> {
        let mut keys: Vec<&Any> = self.entries.keys().collect();
        keys.sort_by(|a, b| any_order(a, b));
        keys.into_iter().map(|key| decode(key, "a key")).collect()
    }

    /// The value of `key`, if the map has it.
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the value is not a `V`.
    pub fn get<Q: ToAny + ?Sized>(&mut self, key: &Q) -> Result<Option<V::Handle<'_>>, Failure>
    where
        K: Borrow<Q>,
    {
        let key = key.to_any();
        let Some(value) = self.entries.get_mut(&key) else {
            return Ok(None);
        };
        let kind = value.kind();
        V::handle(value, self.scope.child(key))
            .map(Some)
            .ok_or_else(|| mismatch(kind, V::KIND))
    }

    /// The value of `key`, added with `V`'s initial value if the map does not have it.
    ///
    /// # Errors
    ///
    /// A failure (`FAILED_PRECONDITION`) when the value is not a `V`.
    pub fn get_or_create<Q: ToAny + ?Sized>(&mut self, key: &Q) -> Result<V::Handle<'_>, Failure>
    where
        K: Borrow<Q>,
    {
        let key = key.to_any();
        let value = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| View::empty(V::KIND));
        let kind = value.kind();
        V::handle(value, self.scope.child(key)).ok_or_else(|| mismatch(kind, V::KIND))
    }

    /// Removes the entry of `key`; returns whether there was one. Adding the key again later
    /// starts from `V`'s initial value.
    pub fn remove<Q: ToAny + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        let key = key.to_any();
        if self.entries.remove(&key).is_none() {
            return false;
        }
        let mut path = self.scope.path.clone();
        path.push(key);
        self.scope.edits.removed(path);
        true
    }

    /// Removes every entry. The delta says `cleared` (followed by what was added after).
    pub fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.scope.edits.cleared(&self.scope.path);
        }
    }

    /// The entries, decoded, ordered by the encoding of their keys.
    ///
    /// # Errors
    ///
    /// A failure (`INTERNAL`) when a key is not a `K`, (`FAILED_PRECONDITION`) when a value is
    /// not a `V`.
    pub fn value(&self) -> Result<Vec<(K, V::Value)>, Failure> {
        map_value::<K, V>(self.entries)
    }
}

fn map_value<K: FromAny, V: Crdt>(
    entries: &HashMap<Any, View>,
) -> Result<Vec<(K, V::Value)>, Failure> {
    let mut sorted: Vec<(&Any, &View)> = entries.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| any_order(a, b));
    sorted
        .into_iter()
        .map(|(key, value)| Ok((decode(key, "a key")?, V::value(value)?)))
        .collect()
}

impl<K, V> Sealed for OrMap<'_, K, V> {}

impl<K: CrdtValue, V: Crdt> Crdt for OrMap<'_, K, V> {
    type Handle<'a> = OrMap<'a, K, V>;
    type Value = Vec<(K, V::Value)>;
    const KIND: CrdtKind = CrdtKind::ORMap;

    fn handle<'a>(view: &'a mut View, scope: Scope<'a>) -> Option<OrMap<'a, K, V>> {
        match view {
            View::ORMap(entries) => Some(OrMap {
                entries,
                scope,
                types: PhantomData,
            }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<Self::Value, Failure> {
        match view {
            View::ORMap(entries) => map_value::<K, V>(entries),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

/// A vote: each proxy node votes yes or no on behalf of the entity's commands that ran there,
/// and everyone sees the tally. Its value ([`Votes`]) is what this node sees.
#[derive(Debug)]
pub struct Vote<'a> {
    tally: &'a mut VoteTally,
}

impl Vote<'_> {
    /// The tally as this node sees it.
    pub fn votes(&self) -> Votes {
        Votes::from(*self.tally)
    }

    /// This node's vote.
    pub fn self_vote(&self) -> bool {
        self.tally.self_vote
    }

    /// Whether at least one node votes yes.
    pub fn at_least_one(&self) -> bool {
        self.votes().at_least_one()
    }

    /// Changes this node's vote; the tally counts it at once.
    pub fn vote(&mut self, yes: bool) {
        if self.tally.self_vote != yes {
            self.tally.self_vote = yes;
            self.tally.votes_for = if yes {
                self.tally.votes_for.saturating_add(1)
            } else {
                self.tally.votes_for.saturating_sub(1)
            };
        }
    }
}

/// A [`Vote`]'s tally, as one node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Votes {
    /// This node's vote.
    pub self_vote: bool,
    /// How many nodes vote yes.
    pub votes_for: u32,
    /// How many nodes vote (this one included).
    pub total_voters: u32,
}

impl Votes {
    /// Whether at least one node votes yes.
    pub fn at_least_one(&self) -> bool {
        self.votes_for > 0
    }

    /// Whether more than half of the nodes vote yes.
    pub fn majority(&self) -> bool {
        u64::from(self.votes_for) * 2 > u64::from(self.total_voters)
    }

    /// Whether every node votes yes.
    pub fn all(&self) -> bool {
        self.votes_for >= self.total_voters
    }
}

impl From<VoteTally> for Votes {
    fn from(tally: VoteTally) -> Self {
        Votes {
            self_vote: tally.self_vote,
            votes_for: tally.votes_for,
            total_voters: tally.total_voters,
        }
    }
}

impl Sealed for Vote<'_> {}

impl Crdt for Vote<'_> {
    type Handle<'a> = Vote<'a>;
    type Value = Votes;
    const KIND: CrdtKind = CrdtKind::Vote;

    fn handle<'a>(view: &'a mut View, _: Scope<'a>) -> Option<Vote<'a>> {
        match view {
            View::Vote(tally) => Some(Vote { tally }),
            _ => None,
        }
    }

    fn value(view: &View) -> Result<Votes, Failure> {
        match view {
            View::Vote(tally) => Ok(Votes::from(*tally)),
            other => Err(mismatch(other.kind(), Self::KIND)),
        }
    }
}

//! The tables of the database file and the encoding of what is stored in them (see the crate
//! docs for the layout), plus the reads that both the writer and `load_*` share.

use std::ops::Bound;

use cloudstate_store::{
    Any, EntityKey, EntitySummary, Event, LoggedEvent, Snapshot, StoreError, StoredEntity, Value,
    merge_summaries,
};
use prost::Message;
use redb::{ReadableTable, TableDefinition};

/// The version of the on-disk layout this build reads and writes; it changes whenever the
/// layout changes in a way other builds cannot read. Version 1 (without event logs) is
/// upgraded when opened.
pub const FORMAT_VERSION: u64 = 2;

/// The key of [`FORMAT_VERSION`] in [`META`].
pub(crate) const FORMAT_VERSION_KEY: &str = "format_version";

/// The key in [`META`] of the probe write that proves the store writes again after a failure
/// (its value: when, in seconds since the Unix epoch).
pub(crate) const PROBE_KEY: &str = "probe";

/// Key columns of [`JOURNAL`]: persistence id, entity id, sequence number.
pub(crate) type JournalKey = (&'static str, &'static str, u64);
/// Key columns of [`SNAPSHOTS`] and [`VALUES`]: persistence id, entity id.
pub(crate) type EntityColumns = (&'static str, &'static str);

/// Facts about the file itself: `"format_version"` → [`FORMAT_VERSION`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `(persistence id, entity id, sequence number)` → the event's `google.protobuf.Any`, protobuf
/// encoded.
pub(crate) const JOURNAL: TableDefinition<JournalKey, &[u8]> = TableDefinition::new("journal");

/// `(persistence id, entity id)` → the latest snapshot as a [`Numbered`].
pub(crate) const SNAPSHOTS: TableDefinition<EntityColumns, &[u8]> =
    TableDefinition::new("snapshots");

/// `(persistence id, entity id)` → the value of a value entity as a [`Numbered`] (the number is
/// its version).
pub(crate) const VALUES: TableDefinition<EntityColumns, &[u8]> = TableDefinition::new("values");

/// `(persistence id, offset)` → `(entity id, sequence number)`: the event logs, each event of
/// the journal under its offset in its persistence id's log.
pub(crate) const EVENT_LOG: TableDefinition<(&str, u64), (&str, u64)> =
    TableDefinition::new("event_log");

/// Persistence id → the last offset of its event log.
pub(crate) const EVENT_LOG_HEADS: TableDefinition<&str, u64> =
    TableDefinition::new("event_log_heads");

/// Consumer name → its position in an event log: `(offset, generation)`.
pub(crate) const POSITIONS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("positions");

/// A payload with its sequence number (snapshots) or version (values): protobuf, so a later
/// format can add fields that this one skips.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Numbered {
    #[prost(uint64, tag = "1")]
    number: u64,
    #[prost(message, optional, tag = "2")]
    payload: Option<Any>,
}

/// Encodes a snapshot's or value's record.
pub(crate) fn encode_numbered(number: u64, payload: &Any) -> Vec<u8> {
    Numbered {
        number,
        payload: Some(payload.clone()),
    }
    .encode_to_vec()
}

/// Decodes a record written by [`encode_numbered`]; `what` names it for the error.
fn decode_numbered(bytes: &[u8], what: impl Fn() -> String) -> Result<(u64, Any), Failure> {
    match Numbered::decode(bytes) {
        Err(error) => Err(corrupt(format!("{}: {error}", what()))),
        Ok(Numbered { number: 0, .. }) => {
            Err(corrupt(format!("{}: number 0 is never written", what())))
        }
        Ok(Numbered { payload: None, .. }) => {
            Err(corrupt(format!("{}: the payload is missing", what())))
        }
        Ok(Numbered {
            number,
            payload: Some(payload),
        }) => Ok((number, payload)),
    }
}

/// The key of `key` in [`SNAPSHOTS`] and [`VALUES`].
pub(crate) fn entity(key: &EntityKey) -> (&str, &str) {
    (&key.persistence_id, &key.entity_id)
}

/// Why reading or writing one entity's state failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The database failed; in the writer, the whole transaction is lost.
    Storage(redb::Error),
    /// This operation is refused or its data is unreadable; in the writer, only this request
    /// fails and the rest of the batch goes on.
    Refused(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Refused(error)
    }
}

macro_rules! storage_failures {
    ($($error:ty),*) => {
        $(impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Failure::Storage(error.into())
            }
        })*
    };
}
storage_failures!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError
);

/// The sequence number of the last event of `key`'s journal, 0 if there is none.
pub(crate) fn last_sequence_nr(
    journal: &impl ReadableTable<JournalKey, &'static [u8]>,
    key: &EntityKey,
) -> Result<u64, Failure> {
    let (persistence_id, entity_id) = entity(key);
    let last = journal
        .range((persistence_id, entity_id, 0)..=(persistence_id, entity_id, u64::MAX))?
        .next_back()
        .transpose()?;
    Ok(last.map_or(0, |(stored_key, _)| stored_key.value().2))
}

/// The events of `key`'s journal after sequence number `after`, checked to be consecutive.
/// `location` (the database file) goes into error messages.
pub(crate) fn events_after(
    journal: &impl ReadableTable<JournalKey, &'static [u8]>,
    key: &EntityKey,
    after: u64,
    location: &str,
) -> Result<Vec<Event>, Failure> {
    let (persistence_id, entity_id) = entity(key);
    let range = journal.range::<(&str, &str, u64)>((
        Bound::Excluded((persistence_id, entity_id, after)),
        Bound::Included((persistence_id, entity_id, u64::MAX)),
    ))?;
    let mut events = Vec::new();
    for entry in range {
        let (stored_key, bytes) = entry?;
        let sequence_nr = stored_key.value().2;
        // `after + len` is the previous event's number, which is below `sequence_nr`: no overflow.
        let expected = after + events.len() as u64 + 1;
        if sequence_nr != expected {
            return Err(corrupt(format!(
                "journal of {key} in {location}: expected event {expected}, found {sequence_nr}"
            )));
        }
        let payload = Any::decode(bytes.value()).map_err(|error| {
            corrupt(format!(
                "event {sequence_nr} of {key} in {location}: {error}"
            ))
        })?;
        events.push(Event {
            sequence_nr,
            payload,
        });
    }
    Ok(events)
}

/// The events of `persistence_id`'s log after `after`, at most `limit`, with their payloads
/// from the journal.
pub(crate) fn event_log_after(
    transaction: &redb::ReadTransaction,
    persistence_id: &str,
    after: u64,
    limit: usize,
    location: &str,
) -> Result<Vec<LoggedEvent>, Failure> {
    let log = transaction.open_table(EVENT_LOG)?;
    let journal = transaction.open_table(JOURNAL)?;
    let range = log.range::<(&str, u64)>((
        Bound::Excluded((persistence_id, after)),
        Bound::Included((persistence_id, u64::MAX)),
    ))?;
    let mut events = Vec::new();
    for entry in range.take(limit) {
        let (log_key, value) = entry?;
        let offset = log_key.value().1;
        let (entity_id, sequence_nr) = value.value();
        let key = EntityKey::new(persistence_id, entity_id);
        let expected = after + events.len() as u64 + 1;
        if offset != expected {
            return Err(corrupt(format!(
                "event log of {persistence_id} in {location}: expected offset {expected}, found \
                 {offset}"
            )));
        }
        let Some(bytes) = journal.get((persistence_id, entity_id, sequence_nr))? else {
            return Err(corrupt(format!(
                "event log of {persistence_id} in {location}: offset {offset} names event \
                 {sequence_nr} of {key}, which is not in the journal"
            )));
        };
        let payload = Any::decode(bytes.value()).map_err(|error| {
            corrupt(format!(
                "event {sequence_nr} of {key} in {location}: {error}"
            ))
        })?;
        events.push(LoggedEvent {
            offset,
            key,
            sequence_nr,
            payload,
        });
    }
    Ok(events)
}

/// The snapshot of `key`, if it has one.
pub(crate) fn snapshot(
    snapshots: &impl ReadableTable<EntityColumns, &'static [u8]>,
    key: &EntityKey,
    location: &str,
) -> Result<Option<Snapshot>, Failure> {
    let Some(bytes) = snapshots.get(entity(key))? else {
        return Ok(None);
    };
    let (sequence_nr, payload) =
        decode_numbered(bytes.value(), || format!("snapshot of {key} in {location}"))?;
    Ok(Some(Snapshot {
        sequence_nr,
        payload,
    }))
}

/// The value of `key`, if it has one.
pub(crate) fn value(
    values: &impl ReadableTable<EntityColumns, &'static [u8]>,
    key: &EntityKey,
    location: &str,
) -> Result<Option<Value>, Failure> {
    let Some(bytes) = values.get(entity(key))? else {
        return Ok(None);
    };
    let (version, payload) =
        decode_numbered(bytes.value(), || format!("value of {key} in {location}"))?;
    Ok(Some(Value { version, payload }))
}

fn corrupt(detail: String) -> Failure {
    Failure::Refused(StoreError::Corrupt(detail))
}

/// Per entity of `persistence_id`: the last sequence number of its journal, the sequence number
/// of its snapshot and the version of its value, merged and sorted by entity id.
pub(crate) fn entity_summaries(
    transaction: &redb::ReadTransaction,
    persistence_id: &str,
    location: &str,
) -> Result<Vec<EntitySummary>, Failure> {
    let journal = transaction.open_table(JOURNAL)?;
    let mut journals: Vec<(String, u64)> = Vec::new();
    for entry in journal.range::<(&str, &str, u64)>((persistence_id, "", 0)..)? {
        let (stored_key, _) = entry?;
        let (stored_persistence_id, entity_id, sequence_nr) = stored_key.value();
        if stored_persistence_id != persistence_id {
            break;
        }
        match journals.last_mut() {
            Some((last_entity, last)) if last_entity == entity_id => *last = sequence_nr,
            _ => journals.push((entity_id.to_owned(), sequence_nr)),
        }
    }
    let numbers = |table: TableDefinition<EntityColumns, &[u8]>,
                   what: &str|
     -> Result<Vec<(String, u64)>, Failure> {
        let table = transaction.open_table(table)?;
        let mut found = Vec::new();
        for entry in table.range::<(&str, &str)>((persistence_id, "")..)? {
            let (stored_key, bytes) = entry?;
            let (stored_persistence_id, entity_id) = stored_key.value();
            if stored_persistence_id != persistence_id {
                break;
            }
            let (number, _) = decode_numbered(bytes.value(), || {
                format!("{what} of {persistence_id}|{entity_id} in {location}")
            })?;
            found.push((entity_id.to_owned(), number));
        }
        Ok(found)
    };
    let snapshots = numbers(SNAPSHOTS, "snapshot")?;
    let values = numbers(VALUES, "value")?;
    Ok(merge_summaries(journals, snapshots, values))
}

/// Everything stored for `key`: its snapshot, every event from the first, its value.
pub(crate) fn stored_entity(
    transaction: &redb::ReadTransaction,
    key: &EntityKey,
    location: &str,
) -> Result<StoredEntity, Failure> {
    Ok(StoredEntity {
        snapshot: snapshot(&transaction.open_table(SNAPSHOTS)?, key, location)?,
        events: events_after(&transaction.open_table(JOURNAL)?, key, 0, location)?,
        value: value(&transaction.open_table(VALUES)?, key, location)?,
    })
}

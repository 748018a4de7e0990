//! The writer tasks: the only place that writes, one group commit at a time per writer.
//!
//! A writer takes the first queued request, then whatever else is already queued (up to
//! [`MAX_BATCH`] requests or [`MAX_BATCH_BYTES`]), and applies them with two statements:
//!
//! 1. one `SELECT` reads the stored last sequence number or version of every entity in the
//!    batch;
//! 2. the requests are checked in order against those numbers as the earlier requests of the
//!    batch change them ([`check_append`], version comparison): refused requests get their own
//!    error and write nothing;
//! 3. one statement writes everything that passed: the events (`INSERT` from arrays), the
//!    latest snapshot per entity (upsert), and each value's final state (insert, update or
//!    delete, each conditional on the version read in step 1). A single statement outside an
//!    explicit transaction is a transaction of its own: it commits (one WAL flush) before the
//!    server answers, and only then is any request answered.
//!
//! Another process may write between steps 1 and 3. If it stored one of the batch's events
//! first, the journal's primary key fails the whole statement (nothing is written), and the
//! batch is applied again one request at a time, each with its own two statements: a request
//! that loses to the other writer again gets [`StoreError::Conflict`], the others commit. If it
//! changed or created one of the batch's values, that value's conditional write matches no row;
//! the statement reports which value rows it wrote, and the requests for the others get
//! [`StoreError::Conflict`] while the rest of the batch stands.
//!
//! A batch with fenced requests (cluster mode) is written by [`WRITE_FENCED`] instead: the same
//! statement, led by a CTE that locks the leases its fences name (`FOR SHARE`, in shard order)
//! and keeps those that still match (owner, epoch, unexpired by the database's clock); every
//! row of a fenced request is written only if its fence passed. The locks are held until the
//! statement commits, so a lease cannot be taken over in between, and a request whose fence
//! failed gets [`StoreError::Fenced`] having written nothing. Batches without fences (one node)
//! run the plain statement, unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cloudstate_store::{
    Any, EntityKey, Event, EventLogWatch, Fence, Snapshot, StoreError, ValueWrite, check_append,
};
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Connector, is_connection_error, sql_state, timed_out, unavailable};

/// The most requests one transaction takes: bounds the latency a request queued behind a big
/// batch sees.
pub(crate) const MAX_BATCH: usize = 1024;

/// A batch stops taking requests once their payloads add up to this many bytes (one request
/// may take it past), bounding the size of one transaction's statements.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

/// A write waiting for its writer.
pub(crate) struct Request {
    pub(crate) key: EntityKey,
    pub(crate) op: Op,
    /// The lease the write depends on (cluster mode).
    pub(crate) fence: Option<Fence>,
    /// The new last sequence number (appends) or version (value writes), once committed.
    pub(crate) reply: oneshot::Sender<Outcome>,
}

/// What a [`Request`] writes.
pub(crate) enum Op {
    Append {
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
    },
    WriteValue {
        expected_version: u64,
        write: ValueWrite,
    },
}

/// The answer to one request.
pub(crate) type Outcome = Result<u64, StoreError>;

impl Request {
    /// Roughly how many bytes the request adds to a transaction.
    fn size(&self) -> usize {
        let any = |any: &Any| any.type_url.len() + any.value.len() + 16;
        match &self.op {
            Op::Append { events, snapshot } => {
                events
                    .iter()
                    .map(|event| any(&event.payload))
                    .sum::<usize>()
                    + snapshot
                        .as_ref()
                        .map_or(0, |snapshot| any(&snapshot.payload))
            }
            Op::WriteValue { write, .. } => match write {
                ValueWrite::Update(payload) => any(payload),
                ValueWrite::Delete => 16,
            },
        }
    }

    /// The conflict of a request that lost a race with another writer.
    fn lost_race(&self) -> StoreError {
        let detail = match &self.op {
            Op::Append { events, .. } => format!(
                "another writer stored sequence number {} at the same time",
                events.first().map_or(0, |event| event.sequence_nr)
            ),
            Op::WriteValue {
                expected_version, ..
            } => format!(
                "another writer changed the value from version {expected_version} at the same \
                 time"
            ),
        };
        StoreError::Conflict {
            key: self.key.clone(),
            detail,
        }
    }

    /// The refusal of a request whose fence did not match the lease.
    fn fenced(&self) -> StoreError {
        let detail = match &self.fence {
            Some(fence) => format!("the lease of {fence} is no longer valid"),
            None => "the write has no fence".into(),
        };
        StoreError::Fenced {
            key: self.key.clone(),
            detail,
        }
    }
}

/// Starts a writer task taking requests from `queue`. It runs until every sender is gone and
/// the queued requests are answered, then closes its connection.
pub(crate) fn spawn(
    connector: Arc<Connector>,
    watch: Arc<EventLogWatch>,
    queue: mpsc::Receiver<Request>,
) {
    let writer = Writer {
        connector,
        watch,
        connection: None,
    };
    tokio::spawn(writer.run(queue));
}

/// How applying a batch failed as a whole.
enum Failure {
    /// Another writer stored one of the batch's events first; nothing was written.
    Race,
    /// No connection could be opened; nothing was written.
    Connect(sqlx::Error),
    /// Reading the stored numbers failed; nothing was written.
    Read(sqlx::Error),
    /// The server refused the write with an error; nothing was written.
    WriteRefused(sqlx::Error),
    /// The connection broke (or timed out) while the write was running or committing:
    /// committed or not, nobody knows.
    WriteUnknown(sqlx::Error),
}

impl Failure {
    fn describe(&self, address: &str, writes: usize) -> String {
        let none = if writes == 1 {
            "the write was not stored".to_owned()
        } else {
            format!("none of the {writes} writes of this batch was stored")
        };
        match self {
            Failure::Race => {
                format!("PostgreSQL at {address}: a concurrent writer interfered; {none}")
            }
            Failure::Connect(error) => {
                format!("{}; {none}", unavailable(address, "connecting", error))
            }
            Failure::Read(error) => format!(
                "{}; {none}",
                unavailable(
                    address,
                    "reading the stored sequence numbers and versions",
                    error
                )
            ),
            Failure::WriteRefused(error) => {
                format!("{}; {none}", unavailable(address, "writing", error))
            }
            Failure::WriteUnknown(error) => format!(
                "PostgreSQL at {address}: the connection was lost while the write was committing \
                 ({error}); the outcome is unknown: {}",
                if writes == 1 {
                    "the write may or may not be stored".to_owned()
                } else {
                    format!("each of the {writes} writes of this batch may or may not be stored")
                }
            ),
        }
    }
}

struct Writer {
    connector: Arc<Connector>,
    /// Told the new last offsets of event logs after each commit.
    watch: Arc<EventLogWatch>,
    /// Kept between batches; dropped after it fails.
    connection: Option<PgConnection>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Waiting for the first request and then taking only what is already queued means an
        // idle writer commits a lone request at once, while a busy one gathers everything that
        // arrived during its previous commit into the next.
        while let Some(first) = queue.recv().await {
            let mut bytes = first.size();
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(request) => {
                        bytes += request.size();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch).await;
        }
        if let Some(connection) = self.connection.take() {
            use sqlx::Connection;
            let _ = connection.close().await;
        }
    }

    /// Applies `batch` (one commit, unless another writer interferes), and answers (and
    /// removes) every request.
    async fn commit(&mut self, batch: &mut Vec<Request>) {
        let outcomes = match self.apply(batch).await {
            Ok(outcomes) => outcomes,
            Err(Failure::Race) => {
                tracing::debug!(
                    requests = batch.len(),
                    "another writer interfered with a batch; applying it one request at a time"
                );
                self.one_by_one(batch).await
            }
            Err(failure) => {
                let detail = failure.describe(&self.connector.address, batch.len());
                tracing::warn!("{detail}");
                batch
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(detail.clone())))
                    .collect()
            }
        };
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // The caller may have stopped waiting; its write stands all the same.
            let _ = request.reply.send(outcome);
        }
    }

    /// Applies every request on its own (each its own commit); a request that races with
    /// another writer again is refused with a conflict. After a failure the remaining requests
    /// are not attempted.
    async fn one_by_one(&mut self, batch: &[Request]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut failed: Option<String> = None;
        for request in batch {
            if let Some(detail) = &failed {
                outcomes.push(Err(StoreError::Unavailable(format!(
                    "{detail}; a write of the same batch after it was not attempted and is not \
                     stored"
                ))));
                continue;
            }
            match self.apply(std::slice::from_ref(request)).await {
                Ok(outcome) => outcomes.extend(outcome),
                Err(Failure::Race) => outcomes.push(Err(request.lost_race())),
                Err(failure) => {
                    let detail = failure.describe(&self.connector.address, 1);
                    tracing::warn!("{detail}");
                    outcomes.push(Err(StoreError::Unavailable(detail.clone())));
                    failed = Some(detail);
                }
            }
        }
        outcomes
    }

    /// Reads, checks and writes `requests`: the outcome of every request.
    async fn apply(&mut self, requests: &[Request]) -> Result<Vec<Outcome>, Failure> {
        let mut slots: Vec<Slot<'_>> = Vec::new();
        let mut index: HashMap<Slot<'_>, usize> = HashMap::new();
        let request_slots: Vec<usize> = requests
            .iter()
            .map(|request| {
                let slot = (&request.key, matches!(request.op, Op::WriteValue { .. }));
                *index.entry(slot).or_insert_with(|| {
                    slots.push(slot);
                    slots.len() - 1
                })
            })
            .collect();
        let fences = Fences::of(requests);
        let connector = self.connector.clone();
        let (connection, stored) = self.read_state(&slots).await?;
        let (mut outcomes, changes) = check(requests, &request_slots, &stored, &fences);
        if changes.is_empty() {
            return Ok(outcomes);
        }
        let expected = changes.value_rows();
        let written = match write(&connector, connection, changes, &fences).await {
            Ok(written) => {
                for (persistence_id, head) in &written.heads {
                    self.watch.advance(persistence_id, *head);
                }
                written
            }
            Err(failure) => {
                if matches!(failure, Failure::WriteUnknown(_)) {
                    self.connection = None;
                }
                return Err(failure);
            }
        };
        for (((request, slot), outcome), &fence) in requests
            .iter()
            .zip(&request_slots)
            .zip(&mut outcomes)
            .zip(&fences.of_request)
        {
            if outcome.is_err() {
                continue;
            }
            if fence != NO_FENCE && !written.fences.contains(&fence) {
                // Its fence failed: none of its rows was written.
                *outcome = Err(request.fenced());
            } else if expected.contains(slot) && !written.values.contains(&request.key) {
                // A value whose row was not written: another writer changed it since it was
                // read.
                *outcome = Err(request.lost_race());
            }
        }
        Ok(outcomes)
    }

    /// The stored numbers of `slots`, on the kept connection or a new one: a kept connection
    /// may have broken since its last use, and the read changes nothing, so after a broken
    /// connection (not a slow one) it is tried again once on a new connection.
    async fn read_state(
        &mut self,
        slots: &[Slot<'_>],
    ) -> Result<(&mut PgConnection, Vec<u64>), Failure> {
        if let Some(mut connection) = self.connection.take() {
            match read_state(&self.connector, &mut connection, slots).await {
                Ok(stored) => return Ok((self.connection.insert(connection), stored)),
                Err(error) if is_connection_error(&error) && !timed_out(&error) => {}
                Err(error) => return Err(Failure::Read(error)),
            }
        }
        let mut connection = self.connector.connect().await.map_err(Failure::Connect)?;
        let stored = read_state(&self.connector, &mut connection, slots)
            .await
            .map_err(Failure::Read)?;
        Ok((self.connection.insert(connection), stored))
    }
}

/// An entity as the batch sees it: a journal or a value under one key.
type Slot<'b> = (&'b EntityKey, bool);

/// The fence index of a request without a fence.
const NO_FENCE: i64 = 0;

/// The distinct fences of a batch, numbered from 1 as the statement refers to them.
struct Fences<'b> {
    distinct: Vec<&'b Fence>,
    /// Each request's fence number, [`NO_FENCE`] if it has none.
    of_request: Vec<i64>,
}

impl<'b> Fences<'b> {
    fn of(requests: &'b [Request]) -> Self {
        let mut distinct: Vec<&Fence> = Vec::new();
        let of_request = requests
            .iter()
            .map(|request| match &request.fence {
                None => NO_FENCE,
                Some(fence) => {
                    let position = match distinct.iter().position(|f| *f == fence) {
                        Some(position) => position,
                        None => {
                            distinct.push(fence);
                            distinct.len() - 1
                        }
                    };
                    position as i64 + 1
                }
            })
            .collect();
        Fences {
            distinct,
            of_request,
        }
    }
}

/// The stored last sequence number (journals) or version (values) of every slot, 0 if none.
const READ_STATE: &str = "
SELECT k.i, CASE WHEN k.is_value
    THEN (SELECT v.version FROM value_entities v
          WHERE v.persistence_id = k.p AND v.entity_id = k.e)
    ELSE (SELECT j.sequence_nr FROM journal j
          WHERE j.persistence_id = k.p AND j.entity_id = k.e
          ORDER BY j.sequence_nr DESC LIMIT 1)
    END
FROM unnest($1::bytea[], $2::bytea[], $3::boolean[]) WITH ORDINALITY AS k(p, e, is_value, i)";

async fn read_state(
    connector: &Connector,
    connection: &mut PgConnection,
    slots: &[Slot<'_>],
) -> Result<Vec<u64>, sqlx::Error> {
    let query = sqlx::query(READ_STATE)
        .bind(
            slots
                .iter()
                .map(|(key, _)| key.persistence_id.as_bytes())
                .collect::<Vec<_>>(),
        )
        .bind(
            slots
                .iter()
                .map(|(key, _)| key.entity_id.as_bytes())
                .collect::<Vec<_>>(),
        )
        .bind(slots.iter().map(|(_, value)| *value).collect::<Vec<_>>());
    let rows = connector.bounded(query.fetch_all(connection)).await?;
    let mut stored = vec![0; slots.len()];
    for row in rows {
        let i: i64 = row.try_get(0)?;
        let number: Option<i64> = row.try_get(1)?;
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|i| stored.get_mut(i))
            .ok_or_else(|| sqlx::Error::Protocol(format!("unexpected ordinal {i}")))?;
        *slot = number.map_or(Ok(0), u64::try_from).map_err(|_| {
            sqlx::Error::Protocol(format!("negative sequence number or version {number:?}"))
        })?;
    }
    Ok(stored)
}

/// What one batch writes, with numbers already converted to `bigint`.
#[derive(Default)]
struct Changes<'b> {
    /// Key, sequence number, event, fence number.
    events: Vec<(&'b EntityKey, i64, &'b Any, i64)>,
    /// The latest snapshot of each journal slot, with its fence number.
    snapshots: HashMap<usize, (&'b EntityKey, i64, &'b Any, i64)>,
    /// The fence number of each slot's requests (they must all have the same).
    slot_fences: HashMap<usize, i64>,
    /// The final state of each value slot.
    values: HashMap<usize, ValueChange<'b>>,
}

struct ValueChange<'b> {
    key: &'b EntityKey,
    /// The version read from the database (0: no row).
    stored: i64,
    /// The version after the batch, and the value (`None`: deleted).
    version: i64,
    payload: Option<&'b Any>,
    /// The fence number of the requests that wrote it.
    fence: i64,
}

impl Changes<'_> {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.snapshots.is_empty() && self.values.is_empty()
    }

    /// The value slots whose row the write must insert, update or delete.
    fn value_rows(&self) -> HashSet<usize> {
        self.values
            .iter()
            .filter(|(_, change)| change.stored != 0 || change.payload.is_some())
            .map(|(&slot, _)| slot)
            .collect()
    }
}

/// The largest number a `bigint` column holds, as `u64`.
const MAX_BIGINT: u64 = i64::MAX as u64;

/// Checks the requests in order against the stored numbers as the batch changes them; the
/// outcome of each, and what the accepted ones write.
fn check<'b>(
    batch: &'b [Request],
    request_slots: &[usize],
    stored: &[u64],
    fences: &Fences<'_>,
) -> (Vec<Outcome>, Changes<'b>) {
    let mut current = stored.to_vec();
    let mut changes = Changes::default();
    let outcomes = batch
        .iter()
        .zip(request_slots)
        .zip(&fences.of_request)
        .map(|((request, &slot), &fence)| {
            let key = &request.key;
            let invalid = |detail: String| StoreError::InvalidWrite {
                key: key.clone(),
                detail,
            };
            // One entity's writes in a batch all depend on the same lease (a node drops an
            // entity when it loses its shard); a write under another lease is refused.
            if *changes.slot_fences.entry(slot).or_insert(fence) != fence {
                return Err(request.fenced());
            }
            let last = current.get(slot).copied().unwrap_or(0);
            match &request.op {
                Op::Append { events, snapshot } => {
                    check_append(key, last, events, snapshot.as_ref())?;
                    let new_last = events.last().map_or(last, |event| event.sequence_nr);
                    if new_last > MAX_BIGINT {
                        return Err(invalid(format!(
                            "sequence number {new_last} does not fit PostgreSQL's bigint"
                        )));
                    }
                    // Checked: sequence numbers grow up to `new_last`, which fits.
                    let bigint = |n: u64| n as i64;
                    changes.events.extend(
                        events
                            .iter()
                            .map(|event| (key, bigint(event.sequence_nr), &event.payload, fence)),
                    );
                    if let Some(snapshot) = snapshot {
                        let row = (key, bigint(snapshot.sequence_nr), &snapshot.payload, fence);
                        changes.snapshots.insert(slot, row);
                    }
                    if let Some(number) = current.get_mut(slot) {
                        *number = new_last;
                    }
                    Ok(new_last)
                }
                Op::WriteValue {
                    expected_version,
                    write,
                } => {
                    if last != *expected_version {
                        return Err(StoreError::Conflict {
                            key: key.clone(),
                            detail: format!("expected version {expected_version}, stored {last}"),
                        });
                    }
                    let (version, payload) = match write {
                        ValueWrite::Update(payload) => {
                            if last >= MAX_BIGINT {
                                return Err(invalid(format!(
                                    "version {last} cannot grow past PostgreSQL's bigint"
                                )));
                            }
                            (last + 1, Some(payload))
                        }
                        ValueWrite::Delete => (0, None),
                    };
                    let stored_version = stored.get(slot).copied().unwrap_or(0);
                    // Checked: versions stay within `MAX_BIGINT`.
                    changes.values.insert(
                        slot,
                        ValueChange {
                            key,
                            stored: stored_version as i64,
                            version: version as i64,
                            payload,
                            fence,
                        },
                    );
                    if let Some(number) = current.get_mut(slot) {
                        *number = version;
                    }
                    Ok(version)
                }
            }
        })
        .collect();
    (outcomes, changes)
}

/// Writes a batch's changes in one statement (a transaction of its own); returns the keys of
/// the value rows it inserted, updated or deleted (third column null), and the new last offset
/// of every event log it appended to (entity id null).
///
/// The events get the next offsets of their persistence id's log from `event_log_heads`, in
/// the order they are bound (each entity's in sequence order). Updating the head locks its row
/// until the commit, so another writer appending to the same log waits and takes the offsets
/// after these: offsets follow commit order, and a reader never sees a later offset before an
/// earlier one.
const WRITE: &str = "
WITH ev AS (
    SELECT u.p, u.e, u.s, u.t, u.pl,
           row_number() OVER (PARTITION BY u.p ORDER BY u.i) AS n,
           count(*) OVER (PARTITION BY u.p) AS c
    FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[])
         WITH ORDINALITY AS u(p, e, s, t, pl, i)
), heads AS (
    INSERT INTO event_log_heads (persistence_id, last_offset)
    SELECT p, count(*) FROM ev GROUP BY p ORDER BY p
    ON CONFLICT (persistence_id) DO UPDATE
    SET last_offset = event_log_heads.last_offset + excluded.last_offset
    RETURNING persistence_id, last_offset
), new_events AS (
    INSERT INTO journal (persistence_id, entity_id, sequence_nr, type_url, payload, log_offset)
    SELECT ev.p, ev.e, ev.s, ev.t, ev.pl, h.last_offset - ev.c + ev.n
    FROM ev JOIN heads h ON h.persistence_id = ev.p
), new_snapshots AS (
    INSERT INTO snapshots (persistence_id, entity_id, sequence_nr, type_url, payload)
    SELECT * FROM unnest($6::bytea[], $7::bytea[], $8::bigint[], $9::bytea[], $10::bytea[])
    ON CONFLICT (persistence_id, entity_id) DO UPDATE
    SET sequence_nr = excluded.sequence_nr, type_url = excluded.type_url,
        payload = excluded.payload, written_at = now()
), created AS (
    INSERT INTO value_entities (persistence_id, entity_id, version, type_url, payload)
    SELECT * FROM unnest($11::bytea[], $12::bytea[], $13::bigint[], $14::bytea[], $15::bytea[])
    ON CONFLICT (persistence_id, entity_id) DO NOTHING
    RETURNING persistence_id, entity_id
), updated AS (
    UPDATE value_entities v
    SET version = u.version, type_url = u.type_url, payload = u.payload, written_at = now()
    FROM unnest($16::bytea[], $17::bytea[], $18::bigint[], $19::bigint[], $20::bytea[],
                $21::bytea[]) AS u(p, e, stored, version, type_url, payload)
    WHERE v.persistence_id = u.p AND v.entity_id = u.e AND v.version = u.stored
    RETURNING v.persistence_id, v.entity_id
), deleted AS (
    DELETE FROM value_entities v
    USING unnest($22::bytea[], $23::bytea[], $24::bigint[]) AS d(p, e, stored)
    WHERE v.persistence_id = d.p AND v.entity_id = d.e AND v.version = d.stored
    RETURNING v.persistence_id, v.entity_id
)
SELECT persistence_id, entity_id, NULL::bigint FROM created
UNION ALL SELECT persistence_id, entity_id, NULL FROM updated
UNION ALL SELECT persistence_id, entity_id, NULL FROM deleted
UNION ALL SELECT persistence_id, NULL, last_offset FROM heads";

/// [`WRITE`] for batches with fenced requests: `fence` keeps the fences ($25..$27, numbered
/// from 1) whose lease still matches, locking those leases `FOR SHARE` until the commit; each
/// row carries its request's fence number ($28..$32, 0 for none) and is written only if that
/// fence passed (events before they are numbered in their event log). Returns what `WRITE`
/// returns, then the fence numbers that passed (persistence id and entity id null).
const WRITE_FENCED: &str = "
WITH fence AS MATERIALIZED (
    SELECT f.fi FROM shard_leases l
    JOIN unnest($25::integer[], $26::text[], $27::bigint[]) WITH ORDINALITY
        AS f(shard, owner, epoch, fi)
      ON l.shard = f.shard AND l.owner = f.owner AND l.epoch = f.epoch AND l.expires_at > now()
    ORDER BY l.shard
    FOR SHARE OF l
), ev AS (
    SELECT u.p, u.e, u.s, u.t, u.pl,
           row_number() OVER (PARTITION BY u.p ORDER BY u.i) AS n,
           count(*) OVER (PARTITION BY u.p) AS c
    FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $28::bigint[])
         WITH ORDINALITY AS u(p, e, s, t, pl, f, i)
    WHERE u.f = 0 OR u.f IN (SELECT fi FROM fence)
), heads AS (
    INSERT INTO event_log_heads (persistence_id, last_offset)
    SELECT p, count(*) FROM ev GROUP BY p ORDER BY p
    ON CONFLICT (persistence_id) DO UPDATE
    SET last_offset = event_log_heads.last_offset + excluded.last_offset
    RETURNING persistence_id, last_offset
), new_events AS (
    INSERT INTO journal (persistence_id, entity_id, sequence_nr, type_url, payload, log_offset)
    SELECT ev.p, ev.e, ev.s, ev.t, ev.pl, h.last_offset - ev.c + ev.n
    FROM ev JOIN heads h ON h.persistence_id = ev.p
), new_snapshots AS (
    INSERT INTO snapshots (persistence_id, entity_id, sequence_nr, type_url, payload)
    SELECT p, e, n, t, v
    FROM unnest($6::bytea[], $7::bytea[], $8::bigint[], $9::bytea[], $10::bytea[], $29::bigint[])
        AS x(p, e, n, t, v, f)
    WHERE x.f = 0 OR x.f IN (SELECT fi FROM fence)
    ON CONFLICT (persistence_id, entity_id) DO UPDATE
    SET sequence_nr = excluded.sequence_nr, type_url = excluded.type_url,
        payload = excluded.payload, written_at = now()
), created AS (
    INSERT INTO value_entities (persistence_id, entity_id, version, type_url, payload)
    SELECT p, e, n, t, v
    FROM unnest($11::bytea[], $12::bytea[], $13::bigint[], $14::bytea[], $15::bytea[],
                $30::bigint[]) AS x(p, e, n, t, v, f)
    WHERE x.f = 0 OR x.f IN (SELECT fi FROM fence)
    ON CONFLICT (persistence_id, entity_id) DO NOTHING
    RETURNING persistence_id, entity_id
), updated AS (
    UPDATE value_entities v
    SET version = u.version, type_url = u.type_url, payload = u.payload, written_at = now()
    FROM unnest($16::bytea[], $17::bytea[], $18::bigint[], $19::bigint[], $20::bytea[],
                $21::bytea[], $31::bigint[]) AS u(p, e, stored, version, type_url, payload, f)
    WHERE v.persistence_id = u.p AND v.entity_id = u.e AND v.version = u.stored
      AND (u.f = 0 OR u.f IN (SELECT fi FROM fence))
    RETURNING v.persistence_id, v.entity_id
), deleted AS (
    DELETE FROM value_entities v
    USING unnest($22::bytea[], $23::bytea[], $24::bigint[], $32::bigint[]) AS d(p, e, stored, f)
    WHERE v.persistence_id = d.p AND v.entity_id = d.e AND v.version = d.stored
      AND (d.f = 0 OR d.f IN (SELECT fi FROM fence))
    RETURNING v.persistence_id, v.entity_id
)
SELECT persistence_id, entity_id, NULL::bigint FROM created
UNION ALL SELECT persistence_id, entity_id, NULL FROM updated
UNION ALL SELECT persistence_id, entity_id, NULL FROM deleted
UNION ALL SELECT persistence_id, NULL, last_offset FROM heads
UNION ALL SELECT NULL, NULL, fi FROM fence";

/// Rows of one table as parallel columns, the way `unnest` takes them.
#[derive(Default)]
struct Columns<'b> {
    persistence_ids: Vec<&'b [u8]>,
    entity_ids: Vec<&'b [u8]>,
    stored: Vec<i64>,
    numbers: Vec<i64>,
    type_urls: Vec<&'b [u8]>,
    payloads: Vec<&'b [u8]>,
    fences: Vec<i64>,
}

impl<'b> Columns<'b> {
    fn push(
        &mut self,
        key: &'b EntityKey,
        stored: i64,
        number: i64,
        payload: Option<&'b Any>,
        fence: i64,
    ) {
        self.persistence_ids.push(key.persistence_id.as_bytes());
        self.entity_ids.push(key.entity_id.as_bytes());
        self.stored.push(stored);
        self.numbers.push(number);
        if let Some(payload) = payload {
            self.type_urls.push(payload.type_url.as_bytes());
            self.payloads.push(&payload.value);
        }
        self.fences.push(fence);
    }
}

/// What one [`WRITE`] wrote: the keys of the value rows, the new last offset of each event log
/// appended to, and (for [`WRITE_FENCED`]) the fence numbers that matched their lease.
#[derive(Default)]
struct Written {
    values: HashSet<EntityKey>,
    heads: Vec<(String, u64)>,
    fences: HashSet<i64>,
}

/// Runs [`WRITE`] (or [`WRITE_FENCED`] if any request is fenced).
async fn write(
    connector: &Connector,
    connection: &mut PgConnection,
    changes: Changes<'_>,
    fences: &Fences<'_>,
) -> Result<Written, Failure> {
    let Changes {
        mut events,
        snapshots,
        values,
        ..
    } = changes;
    // Rows go in key order, so that two writers (two proxies) inserting the same keys wait for
    // each other in the same order rather than deadlocking.
    events.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut snapshots: Vec<_> = snapshots.into_values().collect();
    snapshots.sort_by(|a, b| a.0.cmp(b.0));
    let mut values: Vec<_> = values.into_values().collect();
    values.sort_by(|a, b| a.key.cmp(b.key));

    let mut event_columns = Columns::default();
    for (key, sequence_nr, payload, fence) in events {
        event_columns.push(key, 0, sequence_nr, Some(payload), fence);
    }
    let mut snapshot_columns = Columns::default();
    for (key, sequence_nr, payload, fence) in snapshots {
        snapshot_columns.push(key, 0, sequence_nr, Some(payload), fence);
    }
    let (mut created, mut updated, mut deleted) = Default::default();
    let mut keys = HashMap::new();
    for value in values {
        let columns: &mut Columns<'_> = match (value.stored, value.payload) {
            (0, None) => continue,
            (0, Some(_)) => &mut created,
            (_, Some(_)) => &mut updated,
            (_, None) => &mut deleted,
        };
        columns.push(
            value.key,
            value.stored,
            value.version,
            value.payload,
            value.fence,
        );
        keys.insert(
            (
                value.key.persistence_id.as_bytes(),
                value.key.entity_id.as_bytes(),
            ),
            value.key,
        );
    }

    let fenced = !fences.distinct.is_empty();
    let query = sqlx::query(if fenced { WRITE_FENCED } else { WRITE })
        .bind(event_columns.persistence_ids)
        .bind(event_columns.entity_ids)
        .bind(event_columns.numbers)
        .bind(event_columns.type_urls)
        .bind(event_columns.payloads)
        .bind(snapshot_columns.persistence_ids)
        .bind(snapshot_columns.entity_ids)
        .bind(snapshot_columns.numbers)
        .bind(snapshot_columns.type_urls)
        .bind(snapshot_columns.payloads)
        .bind(created.persistence_ids)
        .bind(created.entity_ids)
        .bind(created.numbers)
        .bind(created.type_urls)
        .bind(created.payloads)
        .bind(updated.persistence_ids)
        .bind(updated.entity_ids)
        .bind(updated.stored)
        .bind(updated.numbers)
        .bind(updated.type_urls)
        .bind(updated.payloads)
        .bind(deleted.persistence_ids)
        .bind(deleted.entity_ids)
        .bind(deleted.stored);
    let query = if fenced {
        query
            .bind(
                fences
                    .distinct
                    .iter()
                    .map(|fence| fence.shard as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(
                fences
                    .distinct
                    .iter()
                    .map(|fence| &*fence.owner)
                    .collect::<Vec<_>>(),
            )
            .bind(
                fences
                    .distinct
                    .iter()
                    // Epochs are bigints in the database; a larger one matches no lease.
                    .map(|fence| i64::try_from(fence.epoch).unwrap_or(-1))
                    .collect::<Vec<_>>(),
            )
            .bind(event_columns.fences)
            .bind(snapshot_columns.fences)
            .bind(created.fences)
            .bind(updated.fences)
            .bind(deleted.fences)
    } else {
        query
    };
    // The rows are read to the end of the server's answer, which comes after the commit.
    let rows = match connector.bounded(query.fetch_all(connection)).await {
        Ok(rows) => rows,
        // unique_violation: a sequence number another writer has just stored;
        // deadlock_detected: two writers inserting the same keys in different orders.
        Err(error) if matches!(sql_state(&error).as_deref(), Some("23505" | "40P01")) => {
            return Err(Failure::Race);
        }
        Err(error) if is_connection_error(&error) => return Err(Failure::WriteUnknown(error)),
        Err(error) => return Err(Failure::WriteRefused(error)),
    };
    let mut written = Written {
        values: HashSet::with_capacity(rows.len()),
        ..Written::default()
    };
    for row in rows {
        let read = (|| -> Result<_, sqlx::Error> {
            let persistence_id: Option<&[u8]> = row.try_get(0)?;
            let entity_id: Option<&[u8]> = row.try_get(1)?;
            let number: Option<i64> = row.try_get(2)?;
            match (persistence_id, entity_id, number) {
                (Some(persistence_id), Some(entity_id), _) => {
                    if let Some(key) = keys.get(&(persistence_id, entity_id)) {
                        written.values.insert((*key).clone());
                    }
                }
                (Some(persistence_id), None, Some(head)) => written.heads.push((
                    String::from_utf8_lossy(persistence_id).into_owned(),
                    u64::try_from(head).unwrap_or(0),
                )),
                (None, None, Some(fence)) => {
                    written.fences.insert(fence);
                }
                _ => {}
            }
            Ok(())
        })();
        // Committed, but what was is not known.
        if let Err(error) = read {
            return Err(Failure::WriteUnknown(error));
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use cloudstate_store::{Any, EntityKey, Event, Snapshot, StoreError, ValueWrite};
    use tokio::sync::oneshot;

    use super::{Fences, Op, Request, check};

    fn any(value: &str) -> Any {
        Any {
            type_url: "t".into(),
            value: value.to_owned().into(),
        }
    }

    fn append(key: &EntityKey, sequence_nrs: &[u64], snapshot: Option<u64>) -> Request {
        let op = Op::Append {
            events: sequence_nrs
                .iter()
                .map(|&sequence_nr| Event {
                    sequence_nr,
                    payload: any(&format!("e{sequence_nr}")),
                })
                .collect(),
            snapshot: snapshot.map(|sequence_nr| Snapshot {
                sequence_nr,
                payload: any(&format!("s{sequence_nr}")),
            }),
        };
        request(key, op)
    }

    fn value(key: &EntityKey, expected_version: u64, write: ValueWrite) -> Request {
        let op = Op::WriteValue {
            expected_version,
            write,
        };
        request(key, op)
    }

    fn request(key: &EntityKey, op: Op) -> Request {
        Request {
            key: key.clone(),
            op,
            reply: oneshot::channel().0,
            fence: None,
        }
    }

    /// Requests for one entity see the batch's earlier requests; refused ones change nothing;
    /// only the latest snapshot and each value's final state are written.
    #[test]
    fn a_batch_is_checked_in_order_and_keeps_only_what_passed() {
        let journal = EntityKey::new("p", "journal");
        let counter = EntityKey::new("p", "counter");
        let gone = EntityKey::new("p", "gone");
        let batch = vec![
            append(&journal, &[6, 7], Some(6)),
            append(&journal, &[7], None),
            append(&journal, &[8], Some(8)),
            append(&journal, &[9, 11], None),
            value(&counter, 0, ValueWrite::Update(any("one"))),
            value(&counter, 0, ValueWrite::Update(any("lost"))),
            value(&counter, 1, ValueWrite::Update(any("two"))),
            value(&gone, 4, ValueWrite::Delete),
            // The journal and the value under one key are separate slots.
            value(&journal, 0, ValueWrite::Delete),
        ];
        // Slots: the journal, the counter, gone, the journal's value.
        let slots = [0, 0, 0, 0, 1, 1, 1, 2, 3];
        let stored = [5, 0, 4, 0];
        let (outcomes, changes) = check(&batch, &slots, &stored, &Fences::of(&batch));
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(number) => Ok(number),
                Err(StoreError::Conflict { .. }) => Err("conflict"),
                Err(StoreError::InvalidWrite { .. }) => Err("invalid"),
                Err(other) => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                Ok(7),
                Err("conflict"),
                Ok(8),
                Err("invalid"),
                Ok(1),
                Err("conflict"),
                Ok(2),
                Ok(0),
                Ok(0),
            ]
        );
        let events: Vec<_> = changes.events.iter().map(|(_, n, _, _)| *n).collect();
        assert_eq!(events, vec![6, 7, 8]);
        assert_eq!(changes.snapshots.len(), 1);
        assert_eq!(changes.snapshots[&0].1, 8);
        let counter = &changes.values[&1];
        assert_eq!((counter.stored, counter.version), (0, 2));
        assert_eq!(counter.payload, Some(&any("two")));
        let gone = &changes.values[&2];
        assert_eq!((gone.stored, gone.version, gone.payload), (4, 0, None));
        let untouched = &changes.values[&3];
        assert_eq!((untouched.stored, untouched.payload), (0, None));
    }

    /// Writes of one entity under two different leases in one batch: the later ones are
    /// fenced off, so a batch never mixes what two leases allowed.
    #[test]
    fn one_entity_in_a_batch_has_one_fence() {
        let key = EntityKey::new("p", "fenced");
        let fence = |epoch| cloudstate_store::Fence {
            shard: 3,
            owner: "node".into(),
            epoch,
        };
        let mut batch = vec![
            append(&key, &[1], None),
            append(&key, &[2], None),
            append(&key, &[2], None),
        ];
        batch[0].fence = Some(fence(4));
        batch[1].fence = Some(fence(5));
        batch[2].fence = Some(fence(4));
        let fences = Fences::of(&batch);
        assert_eq!(fences.of_request, vec![1, 2, 1]);
        let (outcomes, changes) = check(&batch, &[0, 0, 0], &[0], &fences);
        assert!(matches!(outcomes[0], Ok(1)));
        assert!(matches!(outcomes[1], Err(StoreError::Fenced { .. })));
        assert!(matches!(outcomes[2], Ok(2)));
        let events: Vec<_> = changes.events.iter().map(|(_, n, _, f)| (*n, *f)).collect();
        assert_eq!(events, vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn numbers_beyond_bigint_are_refused() {
        let key = EntityKey::new("p", "big");
        let last = i64::MAX as u64;
        let batch = vec![
            append(&key, &[last + 1], None),
            value(&key, last, ValueWrite::Update(any("x"))),
        ];
        let (outcomes, changes) = check(&batch, &[0, 1], &[last, last], &Fences::of(&batch));
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, Err(StoreError::InvalidWrite { .. }))),
            "{outcomes:?}"
        );
        assert!(changes.is_empty());
    }
}

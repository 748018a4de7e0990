//! The append path of the in-memory store: one event of about 100 bytes appended to an
//! entity's journal, the work every persisted command does on the memory store (the embedded
//! and PostgreSQL stores have benches of their own, with durable commits).
//!
//! Run with `cargo bench -p cloudstate-store --bench append`; criterion compares each run with
//! the last one it saved, so a regression shows as a change in time per append.

use cloudstate_store::{Any, EntityKey, Event, MemoryStore, Store};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // type URL (31 bytes) + value (65 bytes) + field headers: a 100-byte encoded event.
    let payload = Any {
        type_url: "type.googleapis.com/bench.Event".into(),
        value: vec![0x5a; 65].into(),
    };
    let mut group = c.benchmark_group("memory_append");
    group.throughput(Throughput::Elements(1));
    // Appends spread over 1 entity (one journal grows) and over 1,000.
    for entities in [1u64, 1000] {
        let store = MemoryStore::new();
        let keys: Vec<EntityKey> = (0..entities)
            .map(|entity| EntityKey::new("bench", entity.to_string()))
            .collect();
        let mut next = vec![1u64; keys.len()];
        let mut turn = 0;
        group.bench_with_input(BenchmarkId::new("entities", entities), &entities, |b, _| {
            b.iter(|| {
                let entity = turn % keys.len();
                turn += 1;
                let event = Event {
                    sequence_nr: next[entity],
                    payload: payload.clone(),
                };
                next[entity] += 1;
                runtime
                    .block_on(store.append(&keys[entity], vec![event], None))
                    .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);

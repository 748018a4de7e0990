//! Append throughput of the PostgreSQL store with 1 and 64 concurrent appenders, each append one
//! event of about 100 bytes, each committed durably (a throw-away cluster of the test harness,
//! fsync on). With one appender every append pays a whole commit; with 64 the writers' group
//! commit shares one commit among the appends queued together. Compare with the `pgbench`
//! bench: raw one-row INSERT transactions on the same kind of cluster.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cloudstate_store::{Any, EntityKey, Event, Store};
use cloudstate_store_postgres::{PostgresOptions, PostgresStore};
use cloudstate_testutil::postgres::PostgresServer;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Under the target directory rather than /tmp, which may be a tmpfs where fsync is free.
    let server = PostgresServer::start_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let store: Arc<dyn Store> = Arc::new(
        runtime
            .block_on(PostgresStore::connect(
                &server.url(),
                PostgresOptions::default(),
            ))
            .unwrap(),
    );
    // type URL (31 bytes) + value (65 bytes) + field headers: a 100-byte encoded event.
    let payload = Any {
        type_url: "type.googleapis.com/bench.Event".into(),
        value: vec![0x5a; 65].into(),
    };
    // Every measurement appends to entities of its own, starting at sequence number 1.
    let run = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("postgres_append");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    for appenders in [1u64, 64] {
        group.bench_with_input(
            BenchmarkId::new("appenders", appenders),
            &appenders,
            |bencher, &appenders| {
                bencher.to_async(&runtime).iter_custom(|appends| {
                    let (store, payload) = (store.clone(), payload.clone());
                    let run = run.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..appenders)
                            .map(|appender| {
                                let (store, payload) = (store.clone(), payload.clone());
                                // Spread `appends` over the appenders as evenly as possible.
                                let count =
                                    appends / appenders + u64::from(appender < appends % appenders);
                                let key = EntityKey::new("bench", format!("{run}-{appender}"));
                                tokio::spawn(async move {
                                    for sequence_nr in 1..=count {
                                        let event = Event {
                                            sequence_nr,
                                            payload: payload.clone(),
                                        };
                                        store.append(&key, vec![event], None).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start.elapsed()
                    }
                });
            },
        );
    }
    group.finish();
    drop(store);
    drop(runtime);
    drop(server);
}

criterion_group!(benches, append);
criterion_main!(benches);

//! The embedded store on a disk that fills up: a small tmpfs mounted for the test (the tests
//! run as root, as CI does). Writes fail while the disk is full, the store says it cannot write
//! (so the proxy is not ready), and once space is freed it writes again by itself, without
//! losing an acknowledged write.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cloudstate_store::{Any, EntityKey, Event, Store, StoreError};
use cloudstate_store_embedded::EmbeddedStore;
use tempfile::TempDir;

/// Bounds each wait for the store to change state by itself; never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A tmpfs of a given size, unmounted when dropped.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (as CI has) to make a small disk"
        );
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn event(sequence_nr: u64) -> Event {
    Event {
        sequence_nr,
        payload: Any {
            type_url: "type.googleapis.com/test.Big".into(),
            value: vec![(sequence_nr % 251) as u8; 64 << 10].into(),
        },
    }
}

/// Waits until `ping` succeeds (`true`) or fails (`false`); returns the last error.
async fn wait_for_ping(store: &EmbeddedStore, ok: bool) -> Option<StoreError> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let result = store.ping().await;
        if result.is_ok() == ok {
            return result.err();
        }
        assert!(
            Instant::now() < deadline,
            "ping still {result:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_writes_until_space_is_freed_and_loses_no_acknowledged_write() {
    let disk = Tmpfs::mount("4m");
    // Removing this file frees the space the store needs to go on.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap();
    let dir = disk.path().join("store");
    let store = EmbeddedStore::open(&dir).unwrap();
    let key = EntityKey::new("p", "fat");

    let mut acknowledged = 0;
    let error = loop {
        match store
            .append(&key, vec![event(acknowledged + 1)], None)
            .await
        {
            Ok(()) => acknowledged += 1,
            Err(error) => break error,
        }
        assert!(acknowledged < 200, "a 4 MiB disk never filled up");
    };
    assert!(acknowledged > 0);
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");

    // The store knows it cannot write: not ready, and writes fail at once naming the cause.
    let not_ready = wait_for_ping(&store, false).await;
    assert!(
        matches!(&not_ready, Some(StoreError::Unavailable(m)) if m.contains("cannot write")),
        "{not_ready:?}"
    );
    let error = store
        .append(&key, vec![event(acknowledged + 1)], None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cannot write"), "{error}");

    // Space comes back: the store heals by itself.
    std::fs::remove_file(&ballast).unwrap();
    wait_for_ping(&store, true).await;
    let recovery = store.load_journal(&key).await.unwrap();
    let last = recovery.last_sequence_nr();
    assert!(
        last >= acknowledged,
        "acknowledged {acknowledged}, stored {last}"
    );
    assert_eq!(recovery.events.len() as u64, last);
    for stored in &recovery.events {
        assert_eq!(
            stored,
            &event(stored.sequence_nr),
            "event {}",
            stored.sequence_nr
        );
    }
    store
        .append(&key, vec![event(last + 1)], None)
        .await
        .unwrap();

    // And all of it is on disk.
    drop(store);
    let store = EmbeddedStore::open(&dir).unwrap();
    let recovery = store.load_journal(&key).await.unwrap();
    assert_eq!(recovery.last_sequence_nr(), last + 1);
}

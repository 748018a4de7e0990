//! The shared storage test suite against the in-memory store.

use cloudstate_store::MemoryStore;

cloudstate_store::store_test_suite!(memory, async { MemoryStore::new() });

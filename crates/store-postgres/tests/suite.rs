//! The shared storage test suite against the PostgreSQL store: one server for the whole test
//! binary, a fresh database for every test.

use cloudstate_store_postgres::{PostgresOptions, PostgresStore};
use cloudstate_testutil::postgres::PostgresServer;

async fn fresh() -> PostgresStore {
    let url = PostgresServer::shared().unwrap().create_database().unwrap();
    PostgresStore::connect(&url, PostgresOptions::default())
        .await
        .unwrap()
}

cloudstate_store::store_test_suite!(postgres, fresh());

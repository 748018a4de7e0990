//! `cloudstate-proxy inspect`: what a store holds, as JSON lines, for debugging.
//!
//! `inspect <persistence-id>` lists the entities of a persistence id (one line each: entity
//! id, last sequence number, snapshot sequence number, value version); `inspect
//! <persistence-id> <entity-id>` prints the entity's snapshot, every event and its value, one
//! line each. Payloads are shown as JSON when their type is known: from a descriptor set file
//! (`--descriptor-set`), from a running user function's discovery (`--user-function`), or, for
//! the support libraries' JSON and primitive payloads, by themselves; otherwise as base64.
//!
//! Stores are opened read-only: the embedded store's file is never changed (and cannot be read
//! while a proxy has it open: redb allows no reader beside a writer of another process);
//! PostgreSQL is read in read-only sessions, without migrations.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Parser;
use cloudstate_engine::{ServiceModel, UserFunction};
use cloudstate_store::{Any, EntityKey, Inspect};
use cloudstate_store_embedded::ReadOnlyStore;
use cloudstate_store_postgres::{PostgresOptions, PostgresReader};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{Value as Json, json};

use crate::config::{StoreConfig, parse_store};

/// Prints what a store holds for a persistence id (its entities) or for one entity (snapshot,
/// events, value), as JSON lines. The embedded store is opened read-only.
#[derive(Debug, Parser)]
#[command(name = "cloudstate-proxy inspect", version)]
pub struct InspectArgs {
    /// The store to read, written as the proxy's `--store`: `embedded:<directory>` or
    /// `postgres://user:password@host:port/database`.
    #[arg(long, env = "CLOUDSTATE_STORE", default_value = "embedded:./cloudstate-data", value_parser = parse_store)]
    store: StoreConfig,

    /// A `FileDescriptorSet` with the payloads' message types (`protoc --include_imports
    /// --descriptor_set_out=FILE ...`), to show payloads as JSON.
    #[arg(long, value_name = "FILE")]
    descriptor_set: Option<PathBuf>,

    /// `host:port` of a running user function, whose descriptors (asked for by discovery) are
    /// used to show payloads as JSON.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "descriptor_set")]
    user_function: Option<String>,

    /// The persistence id the entity's service declares (e.g. `shopping-cart`).
    persistence_id: String,

    /// The entity id; without it, the persistence id's entities are listed.
    entity_id: Option<String>,
}

/// Runs `inspect` with `args` (the first is the subcommand's name).
pub async fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<()> {
    let args = match InspectArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    let payloads = Payloads::load(&args).await?;
    let store: Box<dyn Inspect> = match &args.store {
        StoreConfig::Memory => bail!(
            "the memory store keeps state only inside the running proxy's process: there is \
             nothing to inspect"
        ),
        StoreConfig::Embedded(dir) => {
            Box::new(ReadOnlyStore::open(dir).map_err(|error| match error {
                cloudstate_store_embedded::Error::Locked { path } => anyhow::anyhow!(
                    "the store {} is open in another process (a running proxy?): the embedded \
                     store can be inspected only while no proxy has it open; stop the proxy, or \
                     inspect a copy of the directory taken while it was stopped",
                    path.display()
                ),
                error => error.into(),
            })?)
        }
        StoreConfig::Postgres(url) => Box::new(
            PostgresReader::connect(url, &PostgresOptions::default())
                .await
                .context("opening the PostgreSQL store to read it")?,
        ),
    };
    let mut out = std::io::stdout().lock();
    let mut line = |value: Json| -> anyhow::Result<()> {
        use std::io::Write;
        match writeln!(out, "{value}") {
            // The reader has gone (`inspect ... | head`): nothing more to say.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            result => result.context("writing to standard output"),
        }
    };
    let Some(entity_id) = &args.entity_id else {
        let entities = store.list_entities(&args.persistence_id).await?;
        if entities.is_empty() {
            eprintln!(
                "no entities of persistence id `{}` are stored",
                args.persistence_id
            );
        }
        for entity in entities {
            line(json!({
                "entity_id": entity.entity_id,
                "last_sequence_nr": entity.last_sequence_nr,
                "snapshot_sequence_nr": entity.snapshot_sequence_nr,
                "value_version": entity.value_version,
            }))?;
        }
        return Ok(());
    };
    let key = EntityKey::new(args.persistence_id.as_str(), entity_id.as_str());
    let entity = store.read_entity(&key).await?;
    if entity.snapshot.is_none() && entity.events.is_empty() && entity.value.is_none() {
        eprintln!(
            "nothing is stored for entity `{entity_id}` of persistence id `{}`",
            args.persistence_id
        );
    }
    if let Some(snapshot) = &entity.snapshot {
        line(payloads.record(
            json!({"record": "snapshot", "sequence_nr": snapshot.sequence_nr}),
            &snapshot.payload,
        ))?;
    }
    for event in &entity.events {
        line(payloads.record(
            json!({"record": "event", "sequence_nr": event.sequence_nr}),
            &event.payload,
        ))?;
    }
    if let Some(value) = &entity.value {
        line(payloads.record(
            json!({"record": "value", "version": value.version}),
            &value.payload,
        ))?;
    }
    Ok(())
}

/// Turns payloads into JSON where their types are known.
struct Payloads {
    pool: Option<DescriptorPool>,
}

/// How long a user function gets to answer discovery.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

impl Payloads {
    /// The descriptors named by `--descriptor-set` or `--user-function`, if any.
    async fn load(args: &InspectArgs) -> anyhow::Result<Payloads> {
        if let Some(path) = &args.descriptor_set {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading the descriptor set {}", path.display()))?;
            let pool = DescriptorPool::decode(&bytes[..]).with_context(|| {
                format!(
                    "{} is not a complete FileDescriptorSet (made with protoc \
                     --include_imports --descriptor_set_out?)",
                    path.display()
                )
            })?;
            return Ok(Payloads { pool: Some(pool) });
        }
        let Some(address) = &args.user_function else {
            return Ok(Payloads { pool: None });
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .with_context(|| format!("--user-function `{address}` is not HOST:PORT"))?;
        let user_function = UserFunction::new(host, port, 64 << 20)
            .with_context(|| format!("invalid user function address {address}"))?;
        let spec = tokio::time::timeout(DISCOVERY_TIMEOUT, user_function.discover())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the user function at {address} did not answer discovery within {DISCOVERY_TIMEOUT:?}"
                )
            })?
            .map_err(|status| {
                anyhow::anyhow!(
                    "discovery of the user function at {address} failed: {}",
                    status.message()
                )
            })?;
        let model = ServiceModel::build(&spec)
            .with_context(|| format!("the user function at {address} declared invalid services"))?;
        let persistence_ids: Vec<&str> = model
            .services()
            .iter()
            .filter(|service| service.kind.is_stateful())
            .map(|service| &*service.persistence_id)
            .collect();
        if !persistence_ids.contains(&args.persistence_id.as_str()) {
            eprintln!(
                "note: the user function at {address} declares no service with persistence id \
                 `{}` (it declares: {})",
                args.persistence_id,
                persistence_ids.join(", ")
            );
        }
        Ok(Payloads {
            pool: Some(model.pool().clone()),
        })
    }

    /// `record` with the payload's type and the payload: `payload` as JSON, or
    /// `payload_base64` (and why, if a known type did not decode).
    fn record(&self, mut record: Json, payload: &Any) -> Json {
        let fields = record
            .as_object_mut()
            .expect("records are built as JSON objects");
        fields.insert("type".into(), payload.type_url.clone().into());
        match self.to_json(payload) {
            Ok(Some(json)) => {
                fields.insert("payload".into(), json);
            }
            result => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&payload.value);
                fields.insert("payload_base64".into(), encoded.into());
                if let Err(error) = result {
                    fields.insert("decode_error".into(), error.into());
                }
            }
        }
        record
    }

    /// The payload as JSON; `None` if its type is not known.
    fn to_json(&self, payload: &Any) -> Result<Option<Json>, String> {
        let bytes = &payload.value[..];
        if let Some(primitive) = payload.type_url.strip_prefix("p.cloudstate.io/") {
            return primitive_to_json(primitive, bytes).map(Some);
        }
        if payload.type_url.starts_with("json.cloudstate.io/") {
            let text = Binary::decode(bytes)
                .map_err(|error| error.to_string())?
                .value;
            return serde_json::from_slice(&text)
                .map(Some)
                .map_err(|error| format!("not JSON: {error}"));
        }
        let Some(pool) = &self.pool else {
            return Ok(None);
        };
        let name = payload.type_url.rsplit('/').next().unwrap_or_default();
        let Some(descriptor) = pool.get_message_by_name(name) else {
            return Ok(None);
        };
        let message = DynamicMessage::decode(descriptor, bytes)
            .map_err(|error| format!("not a valid {name}: {error}"))?;
        serde_json::to_value(&message)
            .map(Some)
            .map_err(|error| error.to_string())
    }
}

/// The support libraries' primitive payloads (`p.cloudstate.io/<type>`) by type: the value in
/// field 1.
fn primitive_to_json(primitive: &str, bytes: &[u8]) -> Result<Json, String> {
    let error = |error: prost::DecodeError| error.to_string();
    Ok(match primitive {
        "string" => json!(Text::decode(bytes).map_err(error)?.value),
        "bytes" => json!(
            base64::engine::general_purpose::STANDARD
                .encode(Binary::decode(bytes).map_err(error)?.value)
        ),
        "bool" => json!(Bool::decode(bytes).map_err(error)?.value),
        "int32" => json!(Int32::decode(bytes).map_err(error)?.value),
        "int64" => json!(Int64::decode(bytes).map_err(error)?.value.to_string()),
        "float" => json!(Float::decode(bytes).map_err(error)?.value),
        "double" => json!(Double::decode(bytes).map_err(error)?.value),
        other => return Err(format!("unknown primitive type `{other}`")),
    })
}

#[derive(Clone, PartialEq, Message)]
struct Text {
    #[prost(string, tag = "1")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Binary {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct Bool {
    #[prost(bool, tag = "1")]
    value: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Int32 {
    #[prost(int32, tag = "1")]
    value: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Int64 {
    #[prost(int64, tag = "1")]
    value: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Float {
    #[prost(float, tag = "1")]
    value: f32,
}

#[derive(Clone, PartialEq, Message)]
struct Double {
    #[prost(double, tag = "1")]
    value: f64,
}

//! The service model: what discovery declared, checked and indexed for serving.
//!
//! Built once from the user function's [`EntitySpec`]: the descriptor pool of its protos, one
//! [`ServiceDef`] per declared entity service, and one [`MethodDef`] per rpc, with everything the
//! hot path needs precomputed (gRPC path, type URLs, entity key reader).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloudstate_protocol::{EntitySpec, TYPE_URL_PREFIX, entity_type, option_number};
use prost::Message;
use prost_reflect::{
    DescriptorPool, FieldDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};

use crate::Error;
use crate::payload::{KeyReader, KeyReaderError};
use crate::wire::{FieldReader, WireValue, put_length_delimited};

/// The kinds of entity the proxy hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// `cloudstate.eventsourced.EventSourced`.
    EventSourced,
    /// `cloudstate.valueentity.ValueEntity`.
    ValueEntity,
    /// `cloudstate.crdt.Crdt`.
    Crdt,
    /// `cloudstate.action.ActionProtocol`: stateless, no entity key.
    Action,
}

impl EntityKind {
    /// Every kind this proxy supports, for `ProxyInfo.supported_entity_types`.
    pub const ALL: [EntityKind; 4] = [
        EntityKind::EventSourced,
        EntityKind::ValueEntity,
        EntityKind::Crdt,
        EntityKind::Action,
    ];

    /// The protocol service name of this kind.
    pub fn protocol_name(self) -> &'static str {
        match self {
            EntityKind::EventSourced => entity_type::EVENT_SOURCED,
            EntityKind::ValueEntity => entity_type::VALUE_ENTITY,
            EntityKind::Crdt => entity_type::CRDT,
            EntityKind::Action => entity_type::ACTION,
        }
    }

    /// Whether entities of this kind are addressed by an entity key and run one command at a
    /// time.
    pub fn is_stateful(self) -> bool {
        !matches!(self, EntityKind::Action)
    }

    fn from_protocol_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.protocol_name() == name)
    }
}

/// One user service the proxy serves.
#[derive(Debug)]
pub struct ServiceDef {
    /// Full name, e.g. `com.example.shoppingcart.ShoppingCart`.
    pub name: String,
    /// How its entities are hosted.
    pub kind: EntityKind,
    /// Names its storage.
    pub persistence_id: Arc<str>,
    /// Idle time after which an entity is unloaded, if the user function chose one.
    pub passivation_timeout: Option<Duration>,
    /// The service's descriptor.
    pub descriptor: ServiceDescriptor,
}

/// One rpc of a served service.
#[derive(Debug)]
pub struct MethodDef {
    /// The service it belongs to.
    pub service: Arc<ServiceDef>,
    /// The method's simple name, e.g. `AddItem` (the protocol's `Command.name`).
    pub name: String,
    /// The gRPC path, `/<service>/<method>`.
    pub path: String,
    /// The method's descriptor.
    pub descriptor: MethodDescriptor,
    /// The input message type.
    pub input: MessageDescriptor,
    /// `type.googleapis.com/<input type>`, the type URL of command payloads.
    pub input_type_url: String,
    /// Full name of the output message type.
    pub output_type: String,
    /// Reads the entity key (and checks the payload) of requests; `None` for actions.
    pub key: Option<KeyReader>,
}

impl std::fmt::Display for MethodDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.service.name, self.name)
    }
}

impl MethodDef {
    /// `Service.Method`, for messages.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.service.name, self.name)
    }
}

/// Everything discovery declared, indexed for serving.
#[derive(Debug)]
pub struct ServiceModel {
    pool: DescriptorPool,
    descriptor_set: Bytes,
    services: Vec<Arc<ServiceDef>>,
    methods: HashMap<String, Arc<MethodDef>>,
}

impl ServiceModel {
    /// Checks a discovery answer and builds the model. Errors name the service, method or
    /// field at fault.
    pub fn build(spec: &EntitySpec) -> Result<Self, Error> {
        let invalid = |message: String| Error::InvalidSpec(message);
        // Libraries that predate the version fields report 0.0 (docs/protocol.md §2.2).
        let (major, minor) = spec.service_info.as_ref().map_or((0, 0), |info| {
            (info.protocol_major_version, info.protocol_minor_version)
        });
        if major != 0 || !(0..=2).contains(&minor) {
            return Err(invalid(format!(
                "Incompatible protocol version {major}.{minor}, only 0.0 to 0.2 are supported"
            )));
        }
        if spec.entities.is_empty() {
            return Err(invalid(
                "No entities were reported by the discover call".into(),
            ));
        }
        let descriptor_set = normalize_descriptor_set(&spec.proto).map_err(invalid)?;
        let pool = DescriptorPool::decode(&descriptor_set[..]).map_err(|e| {
            invalid(format!(
                "the descriptor set does not describe valid protos: {e}"
            ))
        })?;

        let mut services = Vec::new();
        let mut methods = HashMap::new();
        for entity in &spec.entities {
            let descriptor = pool
                .get_service_by_name(&entity.service_name)
                .ok_or_else(|| {
                    invalid(format!(
                        "Service [{}] not found in descriptors",
                        entity.service_name
                    ))
                })?;
            let kind = EntityKind::from_protocol_name(&entity.entity_type).ok_or_else(|| {
                invalid(format!(
                    "Service [{}] declared an unsupported entity type [{}]. Supported types are {}",
                    entity.service_name,
                    entity.entity_type,
                    EntityKind::ALL.map(EntityKind::protocol_name).join(", ")
                ))
            })?;
            if services
                .iter()
                .any(|s: &Arc<ServiceDef>| s.name == entity.service_name)
            {
                return Err(invalid(format!(
                    "Service [{}] is declared twice",
                    entity.service_name
                )));
            }
            let passivation_timeout = entity
                .passivation_strategy
                .as_ref()
                .and_then(|strategy| strategy.strategy.as_ref())
                .map(
                    |cloudstate_protocol::entity_passivation_strategy::Strategy::Timeout(t)| {
                        t.timeout
                    },
                )
                .filter(|&millis| millis > 0)
                .map(|millis| Duration::from_millis(millis as u64));
            let persistence_id = if entity.persistence_id.is_empty() {
                entity.service_name.clone()
            } else {
                entity.persistence_id.clone()
            };
            let service = Arc::new(ServiceDef {
                name: entity.service_name.clone(),
                kind,
                persistence_id: persistence_id.into(),
                passivation_timeout,
                descriptor: descriptor.clone(),
            });
            for method in descriptor.methods() {
                let def = method_def(&service, method)?;
                methods.insert(def.path.clone(), Arc::new(def));
            }
            services.push(service);
        }
        Ok(ServiceModel {
            pool,
            descriptor_set: descriptor_set.into(),
            services,
            methods,
        })
    }

    /// The method served at a gRPC path (`/<service>/<method>`).
    pub fn method_by_path(&self, path: &str) -> Option<&Arc<MethodDef>> {
        self.methods.get(path)
    }

    /// The method `name` of `service`.
    pub fn method(&self, service: &str, name: &str) -> Option<&Arc<MethodDef>> {
        self.methods.get(&format!("/{service}/{name}"))
    }

    /// The served services, in the order discovery declared them.
    pub fn services(&self) -> &[Arc<ServiceDef>] {
        &self.services
    }

    /// Every served method.
    pub fn methods(&self) -> impl Iterator<Item = &Arc<MethodDef>> {
        self.methods.values()
    }

    /// The descriptor pool of the user function's protos.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The user function's `FileDescriptorSet`, duplicates removed, options intact.
    pub fn descriptor_set(&self) -> &Bytes {
        &self.descriptor_set
    }
}

fn method_def(service: &Arc<ServiceDef>, method: MethodDescriptor) -> Result<MethodDef, Error> {
    let name = format!("{}.{}", service.name, method.name());
    let input = method.input();
    let key = if service.kind.is_stateful() {
        // CRDT entities serve server-streaming methods as streamed commands.
        let streaming = method.is_client_streaming()
            || (method.is_server_streaming() && service.kind != EntityKind::Crdt);
        if streaming {
            let allowed = match service.kind {
                EntityKind::Crdt => "unary and server-streaming",
                _ => "only unary",
            };
            return Err(Error::InvalidSpec(format!(
                "method {name} is streaming; {:?} entities serve {allowed} methods",
                service.kind
            )));
        }
        let key = KeyReader::new(&input, is_entity_key).map_err(|e| {
            let hint = match e {
                KeyReaderError::NoKeyField => {
                    " (mark the field(s) that name the entity with [(cloudstate.entity_key) = true])"
                }
                KeyReaderError::UnsupportedField { .. } => "",
            };
            Error::InvalidSpec(format!(
                "method {name}: input type {}: {e}{hint}",
                input.full_name()
            ))
        })?;
        Some(key)
    } else {
        None
    };
    Ok(MethodDef {
        service: service.clone(),
        name: method.name().to_owned(),
        path: format!("/{}/{}", service.name, method.name()),
        input_type_url: format!("{TYPE_URL_PREFIX}{}", input.full_name()),
        output_type: method.output().full_name().to_owned(),
        input,
        descriptor: method,
        key,
    })
}

/// Whether a field carries `(cloudstate.entity_key) = true`, under its current number (1080) or
/// the legacy one (50002).
///
/// Read from the encoded options by number: a user function may declare the option under
/// either number and even under the same name (npm `cloudstate` 0.0.3 declares
/// `cloudstate.entity_key` as 50002), and the extension may be missing from its descriptor set.
pub fn is_entity_key(field: &FieldDescriptor) -> bool {
    let options = field.options().encode_to_vec();
    FieldReader::new(&options)
        .filter_map(Result::ok)
        .any(|(number, value, _)| {
            (number == option_number::ENTITY_KEY || number == option_number::LEGACY_ENTITY_KEY)
                && value == WireValue::Varint(1)
        })
}

/// Removes duplicate files (same name) from an encoded `FileDescriptorSet`, keeping the first.
///
/// Works on the raw bytes so that every option survives; the files may be in any order.
fn normalize_descriptor_set(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(bytes.len());
    for field in FieldReader::new(bytes) {
        let (number, value, _) =
            field.map_err(|e| format!("the descriptor set is not valid protobuf: {e}"))?;
        let WireValue::LengthDelimited(file) = value else {
            continue;
        };
        if number != 1 {
            continue;
        }
        let name = FieldReader::new(file)
            .filter_map(Result::ok)
            .find_map(|(n, v, _)| match (n, v) {
                (1, WireValue::LengthDelimited(name)) => Some(name),
                _ => None,
            })
            .unwrap_or_default();
        if seen.insert(name) {
            put_length_delimited(&mut out, 1, file);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::descriptor_set;
    use cloudstate_protocol::{Entity, EntityPassivationStrategy, TimeoutPassivationStrategy};

    const CART: &str = r#"
        syntax = "proto3";
        package shop;
        import "cloudstate/entity_key.proto";
        import "cloudstate/legacy_entity_key.proto";
        import "google/protobuf/empty.proto";
        message Add { string user = 1 [(cloudstate.entity_key) = true]; int32 n = 2; }
        message Get { string user = 1 [(cloudstate.legacy_entity_key) = true]; }
        message Cart { int32 n = 1; }
        service Carts {
            rpc AddItem(Add) returns (google.protobuf.Empty);
            rpc GetCart(Get) returns (Cart);
        }
        service Streams { rpc Watch(Get) returns (stream Cart); }
        service Unkeyed { rpc Do(Cart) returns (Cart); }
    "#;

    fn spec(service: &str, entity_type: &str) -> EntitySpec {
        EntitySpec {
            proto: descriptor_set(&[("shop.proto", CART)]).into(),
            entities: vec![Entity {
                entity_type: entity_type.into(),
                service_name: service.into(),
                persistence_id: "carts".into(),
                passivation_strategy: Some(EntityPassivationStrategy {
                    strategy: Some(
                        cloudstate_protocol::entity_passivation_strategy::Strategy::Timeout(
                            TimeoutPassivationStrategy { timeout: 250 },
                        ),
                    ),
                }),
            }],
            service_info: None,
        }
    }

    fn build_error(spec: &EntitySpec) -> String {
        ServiceModel::build(spec).unwrap_err().to_string()
    }

    #[test]
    fn indexes_methods_with_keys_under_both_option_numbers() {
        let model = ServiceModel::build(&spec("shop.Carts", entity_type::EVENT_SOURCED)).unwrap();
        let add = model.method_by_path("/shop.Carts/AddItem").unwrap();
        assert_eq!(add.input_type_url, "type.googleapis.com/shop.Add");
        assert_eq!(add.service.persistence_id.as_ref(), "carts");
        assert_eq!(
            add.service.passivation_timeout,
            Some(Duration::from_millis(250))
        );
        let get = model.method("shop.Carts", "GetCart").unwrap();
        assert_eq!(
            get.key
                .as_ref()
                .unwrap()
                .read(b"\x0a\x03ann")
                .unwrap()
                .as_deref(),
            Some("ann")
        );
        assert_eq!(get.output_type, "shop.Cart");
    }

    #[test]
    fn actions_may_stream_and_need_no_key() {
        for service in ["shop.Streams", "shop.Unkeyed"] {
            let model = ServiceModel::build(&spec(service, entity_type::ACTION)).unwrap();
            assert!(model.methods().all(|m| m.key.is_none()));
        }
    }

    #[test]
    fn tolerates_duplicate_files_in_any_order() {
        let mut spec = spec("shop.Carts", entity_type::EVENT_SOURCED);
        // Reverse the file order (user file before its imports) and repeat every file.
        let files: Vec<_> = FieldReader::new(&spec.proto)
            .map(|f| match f.unwrap().1 {
                WireValue::LengthDelimited(file) => file.to_vec(),
                _ => unreachable!(),
            })
            .collect();
        let mut proto = Vec::new();
        for file in files.iter().rev().chain(files.iter()) {
            put_length_delimited(&mut proto, 1, file);
        }
        spec.proto = proto.into();
        assert!(ServiceModel::build(&spec).is_ok());
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        assert!(build_error(&EntitySpec::default()).contains("No entities were reported"));
        assert!(
            build_error(&spec("shop.Missing", entity_type::EVENT_SOURCED))
                .contains("Service [shop.Missing] not found")
        );
        assert!(
            build_error(&spec("shop.Carts", "cloudstate.Nonsense"))
                .contains("unsupported entity type [cloudstate.Nonsense]")
        );
        assert!(
            build_error(&spec("shop.Streams", entity_type::EVENT_SOURCED))
                .contains("shop.Streams.Watch is streaming")
        );
        assert!(
            build_error(&spec("shop.Streams", entity_type::VALUE_ENTITY))
                .contains("shop.Streams.Watch is streaming")
        );
        let unkeyed = build_error(&spec("shop.Unkeyed", entity_type::EVENT_SOURCED));
        assert!(
            unkeyed.contains("shop.Unkeyed.Do") && unkeyed.contains("entity_key"),
            "{unkeyed}"
        );
        assert!(
            build_error(&spec("shop.Unkeyed", entity_type::VALUE_ENTITY)).contains("entity_key")
        );
        let mut newer = spec("shop.Carts", entity_type::EVENT_SOURCED);
        newer.service_info = Some(cloudstate_protocol::ServiceInfo {
            protocol_major_version: 1,
            ..Default::default()
        });
        assert!(build_error(&newer).contains("Incompatible protocol version 1.0"));
        let mut garbage = spec("shop.Carts", entity_type::EVENT_SOURCED);
        garbage.proto = Bytes::from_static(b"\x0a\x05ab");
        assert!(build_error(&garbage).contains("not valid protobuf"));
    }
}

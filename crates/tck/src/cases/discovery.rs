//! Discovery (ProxyTCK 1) and eventing (EventingTCK, pending).

use std::collections::BTreeSet;

use cloudstate_protocol::entity_type;
use prost::Message;

use super::{Case, CaseResult, Ctx, has_services};
use crate::Error;
use crate::error::{ensure, ensure_eq};

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::proxy(
            "discovery proxy: verify proxy info and entity discovery",
            |ctx| Box::pin(proxy_info_and_discovery(ctx)),
        )
        .original("ProxyTCK 1"),
        Case::proxy(
            "discovery proxy: the proxy discovers exactly once at start-up",
            |ctx| Box::pin(discovers_once(ctx)),
        ),
        Case::model(
            "discovery model: the spec is complete and self-contained",
            |ctx| Box::pin(spec_is_complete(ctx)),
        ),
    ]
}

/// Cases of a feature not built yet: eventing.
pub(super) fn later_cases() -> Vec<Case> {
    const NO_EVENTING: &str = "eventing (event log subscriptions) is not built yet; the model \
                               protos leave eventlogeventing.proto out";
    let eventing = [
        ("consume an event", "EventingTCK 1"),
        ("forward a consumed event", "EventingTCK 2"),
        ("process json events", "EventingTCK 3"),
    ];
    eventing
        .into_iter()
        .map(|(name, original)| {
            Case::proxy(format!("eventing proxy: verify {name}"), |_| {
                Box::pin(async { Err(Error::Pending(NO_EVENTING.into())) })
            })
            .original(original)
            .pending(NO_EVENTING)
        })
        .collect()
}

async fn proxy_info_and_discovery(ctx: &Ctx) -> CaseResult {
    let info = ctx.proxy_info()?;
    ensure_eq(
        &(info.protocol_major_version, info.protocol_minor_version),
        &(0, 2),
        "protocol version in ProxyInfo",
    )?;
    let supported: BTreeSet<&str> = info
        .supported_entity_types
        .iter()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        entity_type::ACTION,
        entity_type::VALUE_ENTITY,
        entity_type::EVENT_SOURCED,
        entity_type::CRDT,
    ]
    .into();
    ensure_eq(&supported, &expected, "supported entity types in ProxyInfo")?;
    let services: Vec<&str> = ctx
        .spec()
        .entities
        .iter()
        .map(|entity| entity.service_name.as_str())
        .collect();
    has_services(ctx, &services)
}

async fn discovers_once(ctx: &Ctx) -> CaseResult {
    let discoveries = ctx.relay()?.discoveries();
    ensure_eq(&discoveries.len(), &1, "discover calls seen by the relay")
}

async fn spec_is_complete(ctx: &Ctx) -> CaseResult {
    let spec = ctx.spec();
    ensure(!spec.entities.is_empty(), || "no entities reported".into())?;
    let services: Vec<&str> = spec
        .entities
        .iter()
        .map(|entity| entity.service_name.as_str())
        .collect();
    has_services(ctx, &services)?;
    let files = prost_types::FileDescriptorSet::decode(spec.proto.clone())
        .map_err(|error| Error::Check(format!("the descriptor set does not decode: {error}")))?;
    let names: BTreeSet<&str> = files.file.iter().map(|file| file.name()).collect();
    for file in &files.file {
        for dependency in &file.dependency {
            ensure(names.contains(dependency.as_str()), || {
                format!(
                    "{} imports {dependency}, which the descriptor set lacks",
                    file.name()
                )
            })?;
        }
    }
    let info = spec.service_info.clone().unwrap_or_default();
    ensure(
        info.protocol_major_version == 0 && (0..=2).contains(&info.protocol_minor_version),
        || {
            format!(
                "protocol version {}.{} is not one a proxy accepts (0.0 to 0.2)",
                info.protocol_major_version, info.protocol_minor_version
            )
        },
    )
}

//! The cart on the wire: the real server on a free port, called with the protocol's own gRPC
//! clients, as the proxy calls it.

use cloudstate::protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate::protocol::eventsourced::event_sourced_client::EventSourcedClient;
use cloudstate::protocol::eventsourced::{
    EventSourcedInit, EventSourcedReply, EventSourcedStreamIn, event_sourced_stream_in,
    event_sourced_stream_out,
};
use cloudstate::protocol::{self, Any, ProxyInfo, client_action};
use prost::Message;
use shopping_cart::proto;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

async fn start() -> (Channel, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = shopping_cart::server().unwrap();
    tokio::spawn(server.serve_with_listener(listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, stop)
}

#[tokio::test]
async fn discovery_reports_the_complete_descriptor_set() {
    let (channel, _stop) = start().await;
    let spec = EntityDiscoveryClient::new(channel)
        .discover(ProxyInfo {
            protocol_major_version: 0,
            protocol_minor_version: 2,
            supported_entity_types: vec![protocol::entity_type::EVENT_SOURCED.into()],
            ..ProxyInfo::default()
        })
        .await
        .unwrap()
        .into_inner();

    let entities: Vec<_> = spec
        .entities
        .iter()
        .map(|e| {
            (
                e.entity_type.as_str(),
                e.service_name.as_str(),
                e.persistence_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        entities,
        [(
            "cloudstate.eventsourced.EventSourced",
            "com.example.shoppingcart.ShoppingCart",
            "shopping-cart"
        )]
    );
    let info = spec.service_info.unwrap();
    assert_eq!(info.service_name, "shopping-cart");
    assert_eq!(
        (info.protocol_major_version, info.protocol_minor_version),
        (0, 2)
    );

    // The bytes are exactly what the build compiled.
    assert_eq!(spec.proto, proto::FILE_DESCRIPTOR_SET);
    let files = prost_types::FileDescriptorSet::decode(spec.proto.clone()).unwrap();
    let names: Vec<_> = files.file.iter().map(|f| f.name()).collect();
    for name in [
        "shoppingcart.proto",
        "domain.proto",
        "cloudstate/entity_key.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/descriptor.proto",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    // Custom options survive: FieldDescriptorProto.options = FieldOptions { 1080: true } ...
    let entity_key = [0x42, 0x03, 0xc0, 0x43, 0x01];
    assert!(spec.proto.windows(5).any(|w| w == entity_key));
    // ... and the HTTP rules.
    let path = b"/cart/{user_id}/items/add";
    assert!(spec.proto.windows(path.len()).any(|w| w == path));
}

fn init() -> EventSourcedStreamIn {
    EventSourcedStreamIn {
        message: Some(event_sourced_stream_in::Message::Init(EventSourcedInit {
            service_name: shopping_cart::proto::shopping_cart::NAME.into(),
            entity_id: "user1".into(),
            snapshot: None,
        })),
    }
}

fn command(id: i64, name: &str, payload: Any) -> EventSourcedStreamIn {
    EventSourcedStreamIn {
        message: Some(event_sourced_stream_in::Message::Command(
            protocol::Command {
                entity_id: "user1".into(),
                id,
                name: name.into(),
                payload: Some(payload),
                ..protocol::Command::default()
            },
        )),
    }
}

fn reply_payload(reply: &EventSourcedReply) -> &Any {
    match reply.client_action.as_ref().and_then(|a| a.action.as_ref()) {
        Some(client_action::Action::Reply(reply)) => reply.payload.as_ref().unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[tokio::test]
async fn handle_runs_commands_on_an_entity_stream() {
    let (channel, _stop) = start().await;
    let add = proto::AddLineItem {
        user_id: "user1".into(),
        product_id: "apple".into(),
        name: "Apple".into(),
        quantity: 2,
    };
    let bad = proto::AddLineItem {
        quantity: -1,
        ..add.clone()
    };
    let get = proto::GetShoppingCart {
        user_id: "user1".into(),
    };
    let input = vec![
        init(),
        command(1, "AddItem", Any::from_message(&add)),
        command(2, "AddItem", Any::from_message(&bad)),
        command(3, "GetCart", Any::from_message(&get)),
    ];
    let replies: Vec<EventSourcedReply> = EventSourcedClient::new(channel)
        .handle(tokio_stream::iter(input))
        .await
        .unwrap()
        .into_inner()
        .map(|out| match out.unwrap().message {
            Some(event_sourced_stream_out::Message::Reply(reply)) => reply,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
        .await;
    assert_eq!(replies.len(), 3);

    let added = &replies[0];
    assert_eq!(added.command_id, 1);
    assert_eq!(
        reply_payload(added).type_url,
        "type.googleapis.com/google.protobuf.Empty"
    );
    assert_eq!(
        added.events[0].type_url,
        "type.googleapis.com/com.example.shoppingcart.persistence.ItemAdded"
    );

    let Some(client_action::Action::Failure(failure)) =
        replies[1].client_action.clone().and_then(|a| a.action)
    else {
        panic!("expected a failure: {:?}", replies[1]);
    };
    assert_eq!(
        (failure.command_id, failure.description.as_str()),
        (2, "Cannot add negative quantity of item apple")
    );
    assert_eq!(
        failure.grpc_status_code,
        i32::from(tonic::Code::InvalidArgument)
    );
    assert!(replies[1].events.is_empty());

    let cart = reply_payload(&replies[2]);
    assert_eq!(
        cart.type_url,
        "type.googleapis.com/com.example.shoppingcart.Cart"
    );
    let cart = proto::Cart::decode(cart.value.clone()).unwrap();
    assert_eq!(cart.items.len(), 1);
    assert_eq!(cart.items[0].quantity, 2);
}

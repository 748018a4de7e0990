//! The checkout user function on the wire: the real server on a free port, serving a value
//! entity and an action together, called with the protocol's own gRPC clients as the proxy
//! calls it.

use cloudstate::protocol::action::action_protocol_client::ActionProtocolClient;
use cloudstate::protocol::action::{ActionCommand, action_response};
use cloudstate::protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate::protocol::valueentity::value_entity_client::ValueEntityClient;
use cloudstate::protocol::valueentity::{
    ValueEntityInit, ValueEntityInitState, ValueEntityStreamIn, value_entity_stream_in,
    value_entity_stream_out,
};
use cloudstate::protocol::{self, Any, ProxyInfo, client_action};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

async fn start() -> (Channel, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        checkout::server()
            .unwrap()
            .serve_with_listener(listener, async {
                let _ = stopped.await;
            }),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, stop)
}

#[tokio::test]
async fn discovery_reports_the_entity_and_the_action() {
    let (channel, _stop) = start().await;
    let spec = EntityDiscoveryClient::new(channel)
        .discover(ProxyInfo::default())
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
        [
            (
                protocol::entity_type::VALUE_ENTITY,
                inventory::proto::inventory::NAME,
                inventory::PERSISTENCE_ID
            ),
            (
                protocol::entity_type::ACTION,
                checkout::proto::checkout::NAME,
                ""
            ),
        ]
    );
    assert_eq!(spec.proto, checkout::proto::FILE_DESCRIPTOR_SET);
}

#[tokio::test]
async fn both_protocols_answer_on_one_port() {
    let (channel, _stop) = start().await;

    let order = checkout::proto::Order {
        order_id: "o1".into(),
        lines: vec![checkout::proto::OrderLine {
            product_id: "apple".into(),
            quantity: 2,
        }],
    };
    let response = ActionProtocolClient::new(channel.clone())
        .handle_unary(ActionCommand {
            service_name: checkout::proto::checkout::NAME.into(),
            name: "PlaceOrder".into(),
            payload: Some(Any::from_message(&order)),
            metadata: None,
        })
        .await
        .unwrap()
        .into_inner();
    match response.response {
        Some(action_response::Response::Forward(forward)) => {
            assert_eq!(forward.service_name, inventory::proto::inventory::NAME);
            assert_eq!(forward.command_name, "Reserve");
        }
        other => panic!("expected a forward, got {other:?}"),
    }
    assert_eq!(response.side_effects.len(), 1);

    let input = vec![
        ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                service_name: inventory::proto::inventory::NAME.into(),
                entity_id: "apple".into(),
                state: Some(ValueEntityInitState { value: None }),
            })),
        },
        ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Command(
                protocol::Command {
                    entity_id: "apple".into(),
                    id: 1,
                    name: "SetStock".into(),
                    payload: Some(Any::from_message(&inventory::proto::SetStockRequest {
                        product_id: "apple".into(),
                        available: 4,
                    })),
                    ..protocol::Command::default()
                },
            )),
        },
    ];
    let mut output = ValueEntityClient::new(channel)
        .handle(tokio_stream::iter(input))
        .await
        .unwrap()
        .into_inner();
    let reply = match output.next().await {
        Some(Ok(out)) => match out.message {
            Some(value_entity_stream_out::Message::Reply(reply)) => reply,
            other => panic!("expected a reply, got {other:?}"),
        },
        other => panic!("expected a reply, got {other:?}"),
    };
    let Some(client_action::Action::Reply(reply_message)) =
        reply.client_action.and_then(|a| a.action)
    else {
        panic!("expected a reply message");
    };
    let stock = reply_message
        .payload
        .unwrap()
        .to_message::<inventory::proto::Stock>()
        .unwrap()
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (4, 0));
    assert!(reply.state_action.is_some());
}

//! What operators and their tools see: gRPC server reflection (as grpcurl uses it), the gRPC
//! health service and `/ready` following the user function, `/metrics`, and a graceful stop.

use std::time::Duration;

use cloudstate_e2e::proto::SlowRequest;
use cloudstate_e2e::proto::counter_client::CounterClient;
use cloudstate_e2e::{Service, UserFunction};
use cloudstate_testutil::{free_port, http_get_status};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha;

const CART: &str = "com.example.shoppingcart.ShoppingCart";

/// One reflection request and its answer, as grpcurl sends them.
async fn try_reflect(
    channel: tonic::transport::Channel,
    request: MessageRequest,
) -> Result<MessageResponse, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let response = responses.next().await.expect("a response")?;
    Ok(response.message_response.expect("a message response"))
}

async fn reflect(channel: tonic::transport::Channel, request: MessageRequest) -> MessageResponse {
    try_reflect(channel, request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_and_describes_the_served_services() {
    let service = Service::rust_cart("memory", &[]).unwrap();
    let channel = service.proxy.channel().await.unwrap();

    // `grpcurl list`
    let MessageResponse::ListServicesResponse(list) =
        reflect(channel.clone(), MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a list of services");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&CART), "{names:?}");
    assert!(
        names.contains(&"grpc.reflection.v1.ServerReflection"),
        "{names:?}"
    );
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    // `grpcurl describe`: the file declaring the service, with its HTTP options intact
    // (option 72295728 is encoded as the tag bytes c2 e3 b0 3a... in MethodOptions).
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        channel.clone(),
        MessageRequest::FileContainingSymbol(format!("{CART}.AddItem")),
    )
    .await
    else {
        panic!("not a file descriptor response");
    };
    let file = &files.file_descriptor_proto[0];
    let text = String::from_utf8_lossy(file);
    assert!(text.contains("shoppingcart.proto") && text.contains("AddLineItem"));
    assert!(text.contains("/cart/{user_id}/items/add"), "HTTP rule kept");

    // Its imports can be fetched by name, as grpcurl does to resolve types.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        channel.clone(),
        MessageRequest::FileByFilename("cloudstate/entity_key.proto".into()),
    )
    .await
    else {
        panic!("not a file descriptor response");
    };
    assert_eq!(files.file_descriptor_proto.len(), 1);

    // An unknown symbol ends the call with NOT_FOUND (what grpcurl reports as "not found").
    let error = try_reflect(
        channel.clone(),
        MessageRequest::FileContainingSymbol("nonsense.blabla.Void".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");

    // v1alpha, which older tools use, lists the same services.
    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("not a list of services");
    };
    assert!(list.service.iter().any(|s| s.name == CART));
}

async fn health(channel: tonic::transport::Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_follow_the_user_function() {
    let port = free_port();
    let service = Service::with(UserFunction::rust_cart(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let channel = proxy.channel().await.unwrap();
    assert_eq!(health(channel.clone(), "").await, ServingStatus::Serving);
    assert_eq!(health(channel.clone(), CART).await, ServingStatus::Serving);
    assert_eq!(http_get_status(proxy.port, "/ready"), Some(200));
    let unknown = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "no.Such".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // The user function goes away: not ready, not serving; the process is still live.
    user_function.process.kill();
    assert_eq!(http_get_status(proxy.port, "/ready"), Some(503));
    assert_eq!(health(channel.clone(), "").await, ServingStatus::NotServing);
    assert_eq!(http_get_status(proxy.port, "/live"), Some(200));

    // It comes back: ready again.
    let _user_function = UserFunction::rust_cart(port).unwrap();
    assert_eq!(http_get_status(proxy.port, "/ready"), Some(200));
    assert_eq!(health(channel, "").await, ServingStatus::Serving);
}

/// The body of `GET /metrics`.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_entities_and_store_writes() {
    let service = Service::rust_cart("memory", &[]).unwrap();
    let mut cart = service.cart().await.unwrap();
    cart.add("m1", "apple", 1).await.unwrap();
    cart.add("m2", "apple", 1).await.unwrap();
    cart.add("m2", "apple", -1).await.unwrap_err();

    let text = metrics(service.proxy.port);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    let labels = format!("service=\"{CART}\",method=\"AddItem\"");
    assert!(
        line(&format!(
            "cloudstate_requests_total{{{labels},code=\"Ok\"}}"
        ))
        .ends_with(" 2")
    );
    assert!(
        line(&format!(
            "cloudstate_requests_total{{{labels},code=\"InvalidArgument\"}}"
        ))
        .ends_with(" 1")
    );
    assert!(
        line(&format!(
            "cloudstate_request_duration_seconds_count{{{labels}}}"
        ))
        .ends_with(" 3")
    );
    assert!(line(&format!("cloudstate_active_entities{{service=\"{CART}\"}}")).ends_with(" 2"));
    assert!(
        line("cloudstate_store_operation_duration_seconds_count{operation=\"append\"}")
            .ends_with(" 2")
    );
    assert!(line("cloudstate_requests_in_flight").ends_with(" 0"));
}

/// The autoscaler in the proxy (standalone, log-only scaler) samples the engine's load and
/// decides: with a tiny user function target, a few commands make it ask for more nodes (one
/// step of two from one node).
#[tokio::test(flavor = "multi_thread")]
async fn the_autoscaler_samples_the_load_and_decides() {
    let mut service = Service::rust_cart(
        "memory",
        &[
            "--autoscaler-enabled=true",
            "--autoscaler-user-function-target-concurrency=0.000001",
            "--autoscaler-report-period=100ms",
            "--autoscaler-tick-period=200ms",
        ],
    )
    .unwrap();
    let mut cart = service.cart().await.unwrap();
    for user in ["a1", "a2", "a3"] {
        cart.add(user, "apple", 1).await.unwrap();
    }
    let port = service.proxy.port;
    let decided = "cloudstate_autoscaler_scalings_total{reason=\"user function concurrency\"} 1";
    service
        .proxy
        .process
        .wait_until("a scaling decision", Duration::from_secs(30), || {
            metrics(port).contains(decided)
        })
        .unwrap();
    let text = metrics(port);
    for line in [
        "cloudstate_autoscaler_decision_maker 1",
        "cloudstate_autoscaler_current_nodes 1",
        "cloudstate_autoscaler_desired_nodes 3",
        "cloudstate_autoscaler_phase{phase=\"scaling-up\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let concurrency = text
        .lines()
        .find_map(|l| l.strip_prefix("cloudstate_autoscaler_user_function_concurrency "))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap();
    assert!(concurrency > 0.0, "{concurrency}");
    assert!(
        service.proxy.process.output().contains("would scale"),
        "the log-only scaler logs the decision"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_calls_in_flight_finish() {
    let service = Service::with(
        UserFunction::test_function(free_port()).unwrap(),
        "memory",
        &[],
    )
    .unwrap();
    let Service {
        user_function: _user_function,
        mut proxy,
    } = service;
    let mut counter = CounterClient::new(proxy.channel().await.unwrap());
    let slow = tokio::spawn(async move {
        counter
            .slow(SlowRequest {
                id: "s".into(),
                millis: 1500,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exit = tokio::task::spawn_blocking(move || {
        let code = proxy.process.terminate(Duration::from_secs(15));
        (code, proxy.process.output())
    });
    let reply = slow.await.unwrap();
    assert!(reply.is_ok(), "the call in flight finished: {reply:?}");
    let (code, output) = exit.await.unwrap();
    assert_eq!(code.unwrap(), Some(0), "{output}");
    assert!(
        output.contains("shutting down") && output.contains("stopped"),
        "{output}"
    );
}

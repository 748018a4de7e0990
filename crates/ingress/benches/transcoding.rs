//! HTTP/JSON transcoding, the proxy's extra work on an HTTP/JSON call: finding the rule of a
//! request, turning its JSON body and path variables into the protobuf request, and printing
//! the protobuf reply as JSON. Inputs are the shopping cart's calls, as in the benchmarks'
//! HTTP/JSON scenario.
//!
//! Run with `cargo bench -p cloudstate-ingress --bench transcoding`; criterion compares each
//! run with the last one it saved, so a regression shows as a change in time per call.

use cloudstate_ingress::Transcoder;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Method, Uri};
use prost::Message;
use prost_reflect::DescriptorPool;
use shopping_cart::proto::{Cart, LineItem};

fn transcoding(c: &mut Criterion) {
    let pool = DescriptorPool::decode(shopping_cart::proto::FILE_DESCRIPTOR_SET).unwrap();
    let service = pool
        .get_service_by_name(shopping_cart::proto::shopping_cart::NAME)
        .unwrap();
    let transcoder = Transcoder::new(&service).unwrap();
    let add_uri: Uri = "/cart/0a1b2c3d-42/items/add".parse().unwrap();
    let add_body = br#"{"productId":"p","name":"","quantity":1}"#;
    let cart = Cart {
        items: (0..10)
            .map(|i| LineItem {
                product_id: format!("product-{i}"),
                name: format!("Product number {i}"),
                quantity: i + 1,
            })
            .collect(),
    }
    .encode_to_vec();
    // AddItem replies with google.protobuf.Empty.
    let empty: &[u8] = &[];

    let mut group = c.benchmark_group("transcoding");
    group.throughput(Throughput::Elements(1));
    group.bench_function("request/add_item", |b| {
        b.iter(|| {
            transcoder
                .request(&Method::POST, std::hint::black_box(&add_uri), add_body)
                .unwrap()
        })
    });
    group.bench_function("reply/add_item_empty", |b| {
        b.iter(|| {
            transcoder
                .reply(&Method::POST, add_uri.path(), std::hint::black_box(empty))
                .unwrap()
        })
    });
    group.bench_function("reply/get_cart_10_items", |b| {
        b.iter(|| {
            transcoder
                .reply(
                    &Method::GET,
                    "/carts/0a1b2c3d-42",
                    std::hint::black_box(&cart),
                )
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, transcoding);
criterion_main!(benches);

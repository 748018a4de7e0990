//! The proxy's work on every command payload, which it keeps as bytes: reading the entity key
//! out of a request (a walk of its fields, checking each against its declaration), checking a
//! reply decodes as its type, and walking the wire format alone. Inputs are the shopping
//! cart's messages, as a client sends them.
//!
//! Run with `cargo bench -p cloudstate-engine --bench payload`; criterion compares each run
//! with the last one it saved, so a regression shows as a change in time per call.

use cloudstate_engine::payload::{KeyReader, check_message};
use cloudstate_engine::wire::FieldReader;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use prost_reflect::DescriptorPool;
use shopping_cart::proto::{AddLineItem, Cart, LineItem};

fn payload(c: &mut Criterion) {
    let pool = DescriptorPool::decode(shopping_cart::proto::FILE_DESCRIPTOR_SET).unwrap();
    let message = |name: &str| pool.get_message_by_name(name).unwrap();
    let add = AddLineItem {
        user_id: "0a1b2c3d-42".into(),
        product_id: "p".into(),
        name: String::new(),
        quantity: 1,
    }
    .encode_to_vec();
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
    let key_reader = KeyReader::new(
        &message("com.example.shoppingcart.AddLineItem"),
        cloudstate_engine::model::is_entity_key,
    )
    .unwrap();
    let cart_type = message("com.example.shoppingcart.Cart");

    let mut group = c.benchmark_group("payload");
    group.throughput(Throughput::Elements(1));
    group.bench_function("entity_key/add_line_item", |b| {
        b.iter(|| key_reader.read(std::hint::black_box(&add)).unwrap())
    });
    group.bench_function("check_message/cart_10_items", |b| {
        b.iter(|| check_message(&cart_type, std::hint::black_box(&cart)).unwrap())
    });
    group.bench_function("wire_walk/cart_10_items", |b| {
        b.iter(|| {
            FieldReader::new(std::hint::black_box(&cart))
                .map(|field| field.unwrap().0)
                .sum::<u32>()
        })
    });
    group.finish();
}

criterion_group!(benches, payload);
criterion_main!(benches);

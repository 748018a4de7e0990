//! The shopping-cart workload: `AddItem` in a closed loop, then the correctness check.
//!
//! Requests are prepared once per key before the run, in their wire form (a gRPC frame, or a
//! whole HTTP/1.1 request); a call only clones a `Bytes`. Over HTTP the calls go through the
//! cart's `google.api.http` rules with JSON bodies: `POST /cart/{user_id}/items/add` and
//! `GET /carts/{user_id}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use http::Method;
use http::uri::PathAndQuery;
use prost::Message;
use serde::Serialize;

use crate::check::{CheckReport, KeyCheck};
use crate::keys::KeyPlan;
use crate::runner::Workload;
use crate::transport::{
    CallError, Framed, GrpcClient, GrpcPool, Home, HttpClient, HttpPool, HttpRequest,
};

/// The product every call adds.
pub const PRODUCT_ID: &str = "p";

/// How often the check tries to read a cart before calling it unreadable.
const CHECK_ATTEMPTS: u32 = 3;

/// The messages of `com.example.shoppingcart` the load generator uses, written by hand from
/// `examples/shopping-cart/proto/shoppingcart.proto` so that this crate builds without the
/// example (a test keeps the field numbers in step with the .proto file).
pub mod proto {
    /// `com.example.shoppingcart.AddLineItem`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AddLineItem {
        /// The cart's owner: the entity key.
        #[prost(string, tag = "1")]
        pub user_id: String,
        /// Product id.
        #[prost(string, tag = "2")]
        pub product_id: String,
        /// Product name.
        #[prost(string, tag = "3")]
        pub name: String,
        /// How many to add.
        #[prost(int32, tag = "4")]
        pub quantity: i32,
    }

    /// `com.example.shoppingcart.GetShoppingCart`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetShoppingCart {
        /// The cart's owner: the entity key.
        #[prost(string, tag = "1")]
        pub user_id: String,
    }

    /// `com.example.shoppingcart.LineItem`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LineItem {
        /// Product id.
        #[prost(string, tag = "1")]
        pub product_id: String,
        /// Product name.
        #[prost(string, tag = "2")]
        pub name: String,
        /// Quantity in the cart.
        #[prost(int32, tag = "3")]
        pub quantity: i32,
    }

    /// `com.example.shoppingcart.Cart`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Cart {
        /// The cart's lines.
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<LineItem>,
    }
}

/// The protocol the clients speak to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// gRPC over HTTP/2 without TLS (h2c).
    Grpc,
    /// JSON over HTTP/1.1 (keep-alive), through the cart's HTTP rules; one connection per client.
    Http,
}

/// gRPC method paths of the shopping cart.
fn add_item_path() -> PathAndQuery {
    PathAndQuery::from_static("/com.example.shoppingcart.ShoppingCart/AddItem")
}

fn get_cart_path() -> PathAndQuery {
    PathAndQuery::from_static("/com.example.shoppingcart.ShoppingCart/GetCart")
}

/// The user id (entity key) of key number `key` in run `run_id`.
pub fn user_id(run_id: &str, key: usize) -> String {
    crate::keys::entity_id(run_id, key)
}

/// The `AddItem` request the run sends for one user.
pub fn add_line_item(user_id: String) -> proto::AddLineItem {
    proto::AddLineItem {
        user_id,
        product_id: PRODUCT_ID.to_owned(),
        name: String::new(),
        quantity: 1,
    }
}

/// One key's `AddItem` request, prepared in the wire form of the protocol in use.
#[derive(Debug, Clone)]
pub struct AddRequest {
    user_id: String,
    wire: AddWire,
}

/// The wire form of an `AddItem`.
#[derive(Debug, Clone)]
enum AddWire {
    /// The framed message (the path is the method's).
    Grpc(Framed),
    /// The whole HTTP request.
    Http(HttpRequest),
}

impl AddRequest {
    /// Prepares the request for `user_id` (which needs no percent-encoding: run ids are hex)
    /// to the server of `pool`.
    pub fn new(pool: &CartPool, user_id: String) -> Self {
        let request = add_line_item(user_id.clone());
        let wire = match pool {
            CartPool::Grpc(_) => AddWire::Grpc(Framed::new(&request.encode_to_vec())),
            CartPool::Http(pool) => {
                let json = add_item_json(&request);
                let path = format!("/cart/{user_id}/items/add");
                AddWire::Http(pool.request(&Method::POST, &path, Some(json.as_bytes())))
            }
        };
        AddRequest { user_id, wire }
    }
}

/// The JSON body of an `AddItem` over HTTP (the user id is in the path).
fn add_item_json(request: &proto::AddLineItem) -> String {
    serde_json::json!({
        "productId": request.product_id,
        "name": request.name,
        "quantity": request.quantity,
    })
    .to_string()
}

/// The connections to the proxy, in the protocol in use.
#[derive(Debug, Clone)]
pub enum CartPool {
    /// gRPC connections.
    Grpc(GrpcPool),
    /// HTTP/1.1 connections.
    Http(HttpPool),
}

impl CartPool {
    /// The client for client number `index`.
    pub fn client(&self, index: usize) -> CartClient {
        match self {
            CartPool::Grpc(pool) => CartClient::Grpc(pool.client(index)),
            CartPool::Http(pool) => CartClient::Http(pool.client(index)),
        }
    }
}

/// One client's handle on the shopping cart.
#[derive(Debug)]
pub enum CartClient {
    /// Over gRPC.
    Grpc(GrpcClient),
    /// Over HTTP/JSON.
    Http(HttpClient),
}

impl CartClient {
    /// Sends a prepared `AddItem`.
    pub async fn add_item(&mut self, request: &AddRequest) -> Result<(), CallError> {
        match (self, &request.wire) {
            (CartClient::Grpc(client), AddWire::Grpc(framed)) => {
                client.unary(&add_item_path(), framed).await?;
            }
            (CartClient::Http(client), AddWire::Http(request)) => {
                client.call(request).await?;
            }
            _ => return Err(CallError::BadReply),
        }
        Ok(())
    }

    /// The quantity of [`PRODUCT_ID`] in `user_id`'s cart.
    pub async fn quantity(&mut self, user_id: &str) -> Result<i64, CallError> {
        let cart = match self {
            CartClient::Grpc(client) => {
                let request = proto::GetShoppingCart {
                    user_id: user_id.to_owned(),
                };
                let reply = client
                    .unary(&get_cart_path(), &Framed::new(&request.encode_to_vec()))
                    .await?;
                proto::Cart::decode(reply).map_err(|_| CallError::BadReply)?
            }
            CartClient::Http(client) => {
                let request = client.request(&Method::GET, &format!("/carts/{user_id}"), None);
                let reply = client.call(&request).await?;
                cart_from_json(&reply).ok_or(CallError::BadReply)?
            }
        };
        Ok(cart
            .items
            .iter()
            .filter(|item| item.product_id == PRODUCT_ID)
            .map(|item| i64::from(item.quantity))
            .sum())
    }
}

/// Reads a cart printed as JSON (`{"items": [{"productId": .., "quantity": ..}]}`).
fn cart_from_json(json: &[u8]) -> Option<proto::Cart> {
    let cart: serde_json::Value = serde_json::from_slice(json).ok()?;
    let items = cart.get("items")?.as_array()?;
    let items = items
        .iter()
        .map(|item| {
            Some(proto::LineItem {
                product_id: item.get("productId")?.as_str()?.to_owned(),
                name: item.get("name")?.as_str()?.to_owned(),
                quantity: i32::try_from(item.get("quantity")?.as_i64()?).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(proto::Cart { items })
}

/// The cart workload: requests per key, and per key the calls acknowledged and failed.
#[derive(Debug)]
pub struct CartWorkload {
    pool: CartPool,
    plan: KeyPlan,
    requests: Vec<AddRequest>,
    acked: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
}

/// A cart client's state: its connection and its place in its key sequence.
#[derive(Debug)]
pub struct CartWorker {
    client: CartClient,
    index: usize,
    iteration: u64,
}

impl CartWorkload {
    /// A workload over `plan.keys()` carts named after `run_id`.
    pub fn new(pool: CartPool, plan: KeyPlan, run_id: &str) -> Self {
        let keys = plan.keys();
        CartWorkload {
            requests: (0..keys)
                .map(|key| AddRequest::new(&pool, user_id(run_id, key)))
                .collect(),
            pool,
            plan,
            acked: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..keys).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Reads every cart back and compares it with the acknowledged counts, with up to
    /// `concurrency` reads in flight. Call it once the run is over.
    pub async fn check(self: &Arc<Self>, concurrency: usize) -> CheckReport {
        let readers = concurrency.clamp(1, self.plan.keys());
        let mut tasks = Vec::with_capacity(readers);
        for reader in 0..readers {
            let workload = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = workload.pool.client(reader);
                let mut checks = Vec::new();
                for key in (reader..workload.plan.keys()).step_by(readers) {
                    let observed =
                        read_quantity(&mut client, &workload.requests[key].user_id).await;
                    checks.push(KeyCheck::new(
                        key,
                        workload.acked[key].load(Ordering::Relaxed),
                        workload.failed[key].load(Ordering::Relaxed),
                        observed,
                    ));
                }
                checks
            }));
        }
        let mut checks = Vec::with_capacity(self.plan.keys());
        for task in tasks {
            // A reader task only ends early if it panicked; its keys then count as unread.
            if let Ok(found) = task.await {
                checks.extend(found);
            }
        }
        let read: std::collections::HashSet<usize> = checks.iter().map(|c| c.key).collect();
        for key in (0..self.plan.keys()).filter(|key| !read.contains(key)) {
            checks.push(KeyCheck::new(
                key,
                self.acked[key].load(Ordering::Relaxed),
                self.failed[key].load(Ordering::Relaxed),
                None,
            ));
        }
        checks.sort_by_key(|check| check.key);
        CheckReport::new(checks)
    }
}

/// Reads one cart, retrying a few times; `None` if it could not be read.
async fn read_quantity(client: &mut CartClient, user_id: &str) -> Option<i64> {
    for attempt in 1..=CHECK_ATTEMPTS {
        match client.quantity(user_id).await {
            Ok(quantity) => return Some(quantity),
            Err(_) if attempt < CHECK_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(_) => {}
        }
    }
    None
}

impl Workload for CartWorkload {
    type Client = CartWorker;

    fn client(&self, index: usize) -> CartWorker {
        CartWorker {
            client: self.pool.client(index),
            index,
            iteration: 0,
        }
    }

    fn home(&self, index: usize) -> Option<Home> {
        match &self.pool {
            CartPool::Grpc(pool) => Some(pool.home(index).clone()),
            CartPool::Http(_) => None,
        }
    }

    async fn call(&self, worker: &mut CartWorker) -> Result<(), CallError> {
        let key = self.plan.key(worker.index, worker.iteration);
        worker.iteration += 1;
        let result = worker.client.add_item(&self.requests[key]).await;
        let counter = if result.is_ok() {
            &self.acked[key]
        } else {
            &self.failed[key]
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_add_line_items_of_their_keys() {
        let request = add_line_item(user_id("0a1b2c3d", 42));
        let decoded = proto::AddLineItem::decode(&request.encode_to_vec()[..]).unwrap();
        assert_eq!(decoded.user_id, "0a1b2c3d-42");
        assert_eq!(decoded.product_id, PRODUCT_ID);
        assert_eq!(decoded.quantity, 1);
    }

    #[test]
    fn http_requests_follow_the_cart_rules() {
        let json = add_item_json(&add_line_item(user_id("0a1b2c3d", 42)));
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"productId": PRODUCT_ID, "name": "", "quantity": 1})
        );
        let cart = cart_from_json(
            br#"{"items":[{"productId":"p","name":"","quantity":3},{"productId":"q","name":"Q","quantity":1}]}"#,
        )
        .unwrap();
        assert_eq!(cart.items.len(), 2);
        assert_eq!(
            (cart.items[0].product_id.as_str(), cart.items[0].quantity),
            ("p", 3)
        );
        assert!(cart_from_json(br#"{"items":[{"productId":"p"}]}"#).is_none());
    }

    /// The hand-written messages must keep the field numbers and types of the example's .proto.
    #[test]
    fn messages_match_the_example_proto() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/shopping-cart/proto/shoppingcart.proto"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // The example is not in this checkout.
        };
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in [
            "package com.example.shoppingcart;",
            "service ShoppingCart",
            "rpc AddItem(AddLineItem)",
            "rpc GetCart(GetShoppingCart) returns (Cart)",
            "message AddLineItem { string user_id = 1",
            "string product_id = 2; string name = 3; int32 quantity = 4; }",
            "message GetShoppingCart { string user_id = 1",
            "message LineItem { string product_id = 1; string name = 2; int32 quantity = 3; }",
            "message Cart { repeated LineItem items = 1; }",
        ] {
            assert!(text.contains(expected), "{path} no longer has `{expected}`");
        }
    }
}

//! Helpers shared by the end-to-end tests in `tests/`: start a user function and a proxy, and
//! talk to the shopping cart through the proxy.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cloudstate_ingress::grpc::BytesCodec;
use cloudstate_testutil::{Process, Proxy, ProxyOptions, binary, free_port};
use shopping_cart::proto::shopping_cart_client::ShoppingCartClient;
use shopping_cart::proto::{AddLineItem, GetShoppingCart, LineItem, RemoveLineItem};
use tonic::transport::Channel;

/// How long processes get to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A user function process and the port it listens on.
pub struct UserFunction {
    /// The process.
    pub process: Process,
    /// Its port.
    pub port: u16,
}

impl UserFunction {
    /// Starts the Rust shopping cart example on `port` and waits until it listens.
    pub fn rust_cart(port: u16) -> anyhow::Result<UserFunction> {
        let mut command = Command::new(binary("shopping-cart", "shopping-cart"));
        command.env("HOST", "127.0.0.1").env("PORT", port.to_string());
        Self::start("shopping-cart", command, port)
    }

    /// Starts `command` (which must listen on `port`) and waits until it listens.
    pub fn start(name: &str, command: Command, port: u16) -> anyhow::Result<UserFunction> {
        let mut process = Process::spawn(name, command)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        Ok(UserFunction { process, port })
    }
}

/// A user function with a proxy in front of it.
pub struct Service {
    /// The user function.
    pub user_function: UserFunction,
    /// The proxy.
    pub proxy: Proxy,
}

impl Service {
    /// Starts the Rust cart and a proxy with `--store <store>` and `args`, and waits until the
    /// proxy is ready.
    pub fn rust_cart(store: &str, args: &[&str]) -> anyhow::Result<Service> {
        let user_function = UserFunction::rust_cart(free_port())?;
        Self::with(user_function, store, args)
    }

    /// Starts a proxy in front of `user_function` and waits until it is ready.
    pub fn with(user_function: UserFunction, store: &str, args: &[&str]) -> anyhow::Result<Service> {
        let mut proxy = Proxy::start(ProxyOptions {
            user_function_port: user_function.port,
            store: store.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
        })?;
        proxy.wait_ready(START_TIMEOUT)?;
        Ok(Service {
            user_function,
            proxy,
        })
    }

    /// A cart client connected to the proxy.
    pub async fn cart(&self) -> anyhow::Result<Cart> {
        Ok(Cart(ShoppingCartClient::new(self.proxy.channel().await?)))
    }
}

/// The shopping cart API, called through the proxy.
#[derive(Clone)]
pub struct Cart(pub ShoppingCartClient<Channel>);

impl Cart {
    /// Adds `quantity` of `product` to `user`'s cart.
    pub async fn add(&mut self, user: &str, product: &str, quantity: i32) -> Result<(), tonic::Status> {
        self.0
            .add_item(AddLineItem {
                user_id: user.into(),
                product_id: product.into(),
                name: format!("{product} name"),
                quantity,
            })
            .await
            .map(|_| ())
    }

    /// Removes `product` from `user`'s cart.
    pub async fn remove(&mut self, user: &str, product: &str) -> Result<(), tonic::Status> {
        self.0
            .remove_item(RemoveLineItem {
                user_id: user.into(),
                product_id: product.into(),
            })
            .await
            .map(|_| ())
    }

    /// `user`'s cart as `(product, quantity)` pairs, sorted by product.
    pub async fn get(&mut self, user: &str) -> Result<Vec<(String, i32)>, tonic::Status> {
        let cart = self
            .0
            .get_cart(GetShoppingCart {
                user_id: user.into(),
            })
            .await?
            .into_inner();
        let mut items: Vec<_> = cart
            .items
            .into_iter()
            .map(|LineItem { product_id, quantity, .. }| (product_id, quantity))
            .collect();
        items.sort();
        Ok(items)
    }
}

/// Sends raw bytes as the request of `path` (e.g. `/com.example.shoppingcart.ShoppingCart/AddItem`).
pub async fn raw_call(channel: Channel, path: &'static str, request: Bytes) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, BytesCodec)
        .await
        .map(tonic::Response::into_inner)
}


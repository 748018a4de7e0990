//! Helpers shared by the end-to-end tests in `tests/`: start a user function and a proxy, and
//! talk to the shopping cart through the proxy.
//!
//! The shopping cart exists three times: our Rust example, and the compatibility user functions
//! of `compat/` written with the original support libraries (npm `cloudstate` 0.0.3, PyPI
//! `cloudstate` 0.1.1). [`scenarios`] holds the tests that run against more than one of them.

pub mod scenarios;

/// The types and clients of the test user function's services (`proto/e2e.proto`).
pub mod proto {
    cloudstate::include_protos!("cloudstate.e2e");
}

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, ensure};

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
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("shopping-cart", command, port)
    }

    /// Starts the end-to-end test user function (`test-function`, the services of
    /// `proto/e2e.proto`) on `port` and waits until it listens.
    pub fn test_function(port: u16) -> anyhow::Result<UserFunction> {
        let mut command = Command::new(binary("cloudstate-e2e", "test-function"));
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("test-function", command, port)
    }

    /// Starts the presence example (`examples/presence`: CRDT Vote, streamed commands) on
    /// `port` and waits until it listens.
    pub fn presence(port: u16) -> anyhow::Result<UserFunction> {
        let mut command = Command::new(binary("presence", "presence"));
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("presence", command, port)
    }

    /// Starts the counters example (`examples/counters`: CRDT counters, sets, register, flag
    /// and map) on `port` and waits until it listens.
    pub fn counters(port: u16) -> anyhow::Result<UserFunction> {
        let mut command = Command::new(binary("counters", "counters"));
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("counters", command, port)
    }

    /// Starts the Node shopping cart of `compat/` (npm `cloudstate` 0.0.3) on `port` and waits
    /// until it listens. Fails unless `scripts/install-compat.sh` installed it and its variables
    /// are in the environment.
    pub fn node_cart(port: u16) -> anyhow::Result<UserFunction> {
        let script = compat_file("CLOUDSTATE_COMPAT_NODE_CART")?;
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("node-shopping-cart", command, port)
    }

    /// Starts the Python shopping cart of `compat/` (PyPI `cloudstate` 0.1.1) on `port` and waits
    /// until it listens. Fails unless `scripts/install-compat.sh` installed it and its variables
    /// are in the environment.
    pub fn python_cart(port: u16) -> anyhow::Result<UserFunction> {
        let python = compat_file("CLOUDSTATE_COMPAT_PYTHON")?;
        let script = compat_file("CLOUDSTATE_COMPAT_PYTHON_CART")?;
        let mut command = Command::new(python);
        command
            .arg(script)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
        Self::start("python-shopping-cart", command, port)
    }

    /// Starts `command` (which must listen on `port`) and waits until it listens.
    pub fn start(name: &str, command: Command, port: u16) -> anyhow::Result<UserFunction> {
        let mut process = Process::spawn(name, command)?;
        process.wait_for_port(port, START_TIMEOUT)?;
        Ok(UserFunction { process, port })
    }
}

/// The path in the environment variable `variable`, set by `scripts/install-compat.sh`, which
/// must name an existing file. The compatibility tests are never skipped: without the install
/// they fail, saying how to get it.
fn compat_file(variable: &str) -> anyhow::Result<PathBuf> {
    const HOW: &str = "the compatibility tests need the user functions written with the original \
        Cloudstate libraries: run `eval \"$(scripts/install-compat.sh)\"` in this shell before \
        the tests, or run the whole suite with scripts/test.sh, which does it";
    let path = std::env::var_os(variable)
        .filter(|path| !path.is_empty())
        .ok_or_else(|| anyhow!("${variable} is not set: {HOW}"))?;
    let path = PathBuf::from(path);
    ensure!(
        path.is_file(),
        "${variable} names {}, which does not exist: {HOW}",
        path.display()
    );
    Ok(path)
}

/// A shopping cart user function, by the support library it is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    /// Our Rust SDK: `examples/shopping-cart`.
    Rust,
    /// npm `cloudstate` 0.0.3: `compat/node-shopping-cart`.
    Node,
    /// PyPI `cloudstate` 0.1.1: `compat/python-shopping-cart`.
    Python,
}

impl Library {
    /// Starts this library's shopping cart on `port` and waits until it listens.
    pub fn start_cart(self, port: u16) -> anyhow::Result<UserFunction> {
        match self {
            Library::Rust => UserFunction::rust_cart(port),
            Library::Node => UserFunction::node_cart(port),
            Library::Python => UserFunction::python_cart(port),
        }
    }

    /// Every how many events the cart sends a snapshot; `None` if it never does (the Python
    /// cart: cloudstate 0.1.1 crashes when handed a snapshot in init, see compat/README.md).
    pub fn snapshot_every(self) -> Option<u64> {
        match self {
            Library::Rust | Library::Node => Some(5),
            Library::Python => None,
        }
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

    /// Starts `library`'s cart and a proxy with `--store <store>` and `args`, and waits until the
    /// proxy is ready.
    pub fn cart_of(library: Library, store: &str, args: &[&str]) -> anyhow::Result<Service> {
        let user_function = library.start_cart(free_port())?;
        Self::with(user_function, store, args)
    }

    /// Starts a proxy in front of `user_function` and waits until it is ready.
    pub fn with(
        user_function: UserFunction,
        store: &str,
        args: &[&str],
    ) -> anyhow::Result<Service> {
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
    pub async fn add(
        &mut self,
        user: &str,
        product: &str,
        quantity: i32,
    ) -> Result<(), tonic::Status> {
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
        let mut items: Vec<_> = self
            .line_items(user)
            .await?
            .into_iter()
            .map(
                |LineItem {
                     product_id,
                     quantity,
                     ..
                 }| (product_id, quantity),
            )
            .collect();
        items.sort();
        Ok(items)
    }

    /// `user`'s cart as the user function returns it: every field, in its order.
    pub async fn line_items(&mut self, user: &str) -> Result<Vec<LineItem>, tonic::Status> {
        let cart = self
            .0
            .get_cart(GetShoppingCart {
                user_id: user.into(),
            })
            .await?
            .into_inner();
        Ok(cart.items)
    }
}

/// Sends raw bytes as the request of `path` (e.g. `/com.example.shoppingcart.ShoppingCart/AddItem`).
pub async fn raw_call(
    channel: Channel,
    path: &'static str,
    request: Bytes,
) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, BytesCodec)
        .await
        .map(tonic::Response::into_inner)
}

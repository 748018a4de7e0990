//! The Cloudstate checkout: an action, `Checkout`, that places an order in one call by
//! reserving its lines in the [`inventory`] — it shows forwards and synchronous and
//! asynchronous side effects.
//!
//! `PlaceOrder` with lines `l1, ..., ln` answers:
//!
//! - side effects, run by the proxy in this order before the client gets an answer:
//!   `Inventory.Reserve(l1)`, ..., `Inventory.Reserve(ln-1)`, each **synchronous** (the proxy
//!   waits for it, and its failure fails the order: earlier reservations stay), then
//!   `Checkout.Notify` for every line, **asynchronous** (fire and forget);
//! - a **forward** to `Inventory.Reserve(ln)`: the client gets that product's stock after the
//!   reservation (or its failure, e.g. `FAILED_PRECONDITION` when not enough is available).
//!
//! `Notify` only logs. The user function serves the checkout and the inventory together
//! ([`server`]).

use cloudstate::{ActionContext, ActionService, Failure, Reply};
use inventory::proto::{ReserveRequest, Stock, inventory as stock};

/// The checkout's protobuf types, its service's trait and calls, its gRPC client, and the
/// descriptor set reported at discovery (it includes the inventory's service, which
/// `checkout.proto` imports).
pub mod proto {
    cloudstate::include_protos!("com.example.checkout");

    /// `checkout.proto`, `inventory.proto` and all their imports, options intact.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

/// The checkout action. It keeps nothing between calls.
pub struct Checkout;

impl proto::Checkout for Checkout {
    async fn place_order(
        &self,
        order: proto::Order,
        ctx: &mut ActionContext,
    ) -> Result<Reply<Stock>, Failure> {
        let Some((last, others)) = order.lines.split_last() else {
            return Err(Failure::invalid_argument(format!(
                "Order {} has no lines",
                order.order_id
            )));
        };
        if let Some(line) = order.lines.iter().find(|line| line.quantity <= 0) {
            return Err(Failure::invalid_argument(format!(
                "Order {}: the quantity of {} must be positive, got {}",
                order.order_id, line.product_id, line.quantity
            )));
        }
        for line in others {
            ctx.side_effect(stock::reserve(reserve(line)).synchronous());
        }
        for line in &order.lines {
            ctx.side_effect(proto::checkout::notify(proto::OrderLineNotice {
                order_id: order.order_id.clone(),
                product_id: line.product_id.clone(),
                quantity: line.quantity,
            }));
        }
        Ok(Reply::forward(stock::reserve(reserve(last))))
    }

    async fn notify(
        &self,
        notice: proto::OrderLineNotice,
        _: &mut ActionContext,
    ) -> Result<Reply<()>, Failure> {
        tracing::info!(
            order = %notice.order_id,
            product = %notice.product_id,
            quantity = notice.quantity,
            "order line placed"
        );
        Ok(().into())
    }
}

/// The inventory request reserving `line`.
fn reserve(line: &proto::OrderLine) -> ReserveRequest {
    ReserveRequest {
        product_id: line.product_id.clone(),
        quantity: line.quantity,
    }
}

/// The checkout's registration.
pub fn action() -> ActionService<Checkout> {
    proto::checkout::action(Checkout)
}

/// The user function serving the checkout and the inventory (a value entity and an action in
/// one server), ready to [`serve_from_env`](cloudstate::Server::serve_from_env).
///
/// # Errors
///
/// If the descriptor set and the services disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(inventory::entity())?
        .register(action())?
        .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
}

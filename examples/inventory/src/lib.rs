//! The Cloudstate inventory: one value entity per product, keyed by `product_id`, holding how
//! many units are available and how many are reserved.
//!
//! - `SetStock` sets the available units (zero or more; `INVALID_ARGUMENT` otherwise);
//!   reserved units stay reserved.
//! - `Reserve` moves `quantity` units from available to reserved; it fails with
//!   `FAILED_PRECONDITION` ("Not enough stock of <product>: <n> available, <m> requested")
//!   when fewer are available, and with `INVALID_ARGUMENT` for a quantity that is not
//!   positive.
//! - `Release` moves reserved units back to available (`FAILED_PRECONDITION` when fewer are
//!   reserved).
//! - `GetStock` returns the stock; a product never stocked has none.
//! - `Remove` deletes the product's stock.
//!
//! Each reply is the product's [`Stock`](proto::Stock) after the command. The proxy stores a
//! [`ProductStock`](proto::persistence::ProductStock) per product under the persistence id
//! `inventory`.

use cloudstate::{Failure, Reply, ValueContext, ValueEntityService};

/// The inventory's protobuf types, its service's trait and calls, its gRPC client, and the
/// descriptor set reported at discovery.
pub mod proto {
    cloudstate::include_protos!("com.example.inventory");

    /// What the proxy stores.
    pub mod persistence {
        cloudstate::include_protos!("com.example.inventory.persistence");
    }

    /// `inventory.proto`, `inventory_domain.proto` and all their imports, options intact.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

use proto::persistence::ProductStock;

/// The store's persistence id.
pub const PERSISTENCE_ID: &str = "inventory";

impl proto::Inventory for ProductStock {
    fn set_stock(
        &self,
        request: proto::SetStockRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<proto::Stock>, Failure> {
        if request.available < 0 {
            return Err(Failure::invalid_argument(format!(
                "Stock of {} cannot be negative, got {}",
                request.product_id, request.available
            )));
        }
        let stock = ProductStock {
            available: request.available,
            reserved: self.reserved,
        };
        Ok(stock.store(ctx))
    }

    fn reserve(
        &self,
        request: proto::ReserveRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<proto::Stock>, Failure> {
        positive(&request.product_id, request.quantity)?;
        if request.quantity > self.available {
            return Err(Failure::failed_precondition(format!(
                "Not enough stock of {}: {} available, {} requested",
                request.product_id, self.available, request.quantity
            )));
        }
        let stock = ProductStock {
            available: self.available - request.quantity,
            reserved: add(&request.product_id, self.reserved, request.quantity)?,
        };
        Ok(stock.store(ctx))
    }

    fn release(
        &self,
        request: proto::ReleaseRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<proto::Stock>, Failure> {
        positive(&request.product_id, request.quantity)?;
        if request.quantity > self.reserved {
            return Err(Failure::failed_precondition(format!(
                "Cannot release {} of {}: {} reserved",
                request.quantity, request.product_id, self.reserved
            )));
        }
        let stock = ProductStock {
            available: add(&request.product_id, self.available, request.quantity)?,
            reserved: self.reserved - request.quantity,
        };
        Ok(stock.store(ctx))
    }

    fn get_stock(
        &self,
        _: proto::ProductId,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<proto::Stock>, Failure> {
        Ok(self.reply(ctx).into())
    }

    fn remove(
        &self,
        _: proto::ProductId,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<()>, Failure> {
        ctx.delete_state();
        Ok(().into())
    }
}

impl ProductStock {
    /// The reply: this stock of the entity's product.
    fn reply(&self, ctx: &ValueContext<Self>) -> proto::Stock {
        proto::Stock {
            product_id: ctx.entity_id().to_owned(),
            available: self.available,
            reserved: self.reserved,
        }
    }

    /// Stores this stock and replies with it.
    fn store(self, ctx: &mut ValueContext<Self>) -> Reply<proto::Stock> {
        let reply = self.reply(ctx);
        ctx.update_state(self);
        reply.into()
    }
}

/// Fails unless `quantity` is positive.
fn positive(product_id: &str, quantity: i32) -> Result<(), Failure> {
    if quantity <= 0 {
        return Err(Failure::invalid_argument(format!(
            "Quantity of {product_id} must be positive, got {quantity}"
        )));
    }
    Ok(())
}

/// `units + quantity`, or a failure when that is more than a stock can hold.
fn add(product_id: &str, units: i32, quantity: i32) -> Result<i32, Failure> {
    units.checked_add(quantity).ok_or_else(|| {
        Failure::out_of_range(format!("Stock of {product_id} would exceed {}", i32::MAX))
    })
}

/// The inventory's registration: persistence id `inventory`.
pub fn entity() -> ValueEntityService<ProductStock> {
    proto::inventory::entity().persistence_id(PERSISTENCE_ID)
}

/// The user function serving the inventory, ready to
/// [`serve_from_env`](cloudstate::Server::serve_from_env).
///
/// # Errors
///
/// If the descriptor set and the entity disagree (a build problem).
pub fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(entity())?
        .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")))
}

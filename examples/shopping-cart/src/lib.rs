//! The Cloudstate shopping cart: one event sourced entity per user, keyed by `user_id`.
//!
//! - `AddItem` adds a quantity of a product; adding a product already in the cart increases its
//!   quantity. A quantity of zero or less fails with `INVALID_ARGUMENT`
//!   ("Cannot add negative quantity of item <product_id>").
//! - `RemoveItem` removes a product; removing one that is not in the cart fails with
//!   `NOT_FOUND` ("Cannot remove item <product_id> because it is not in the cart.").
//! - `GetCart` returns the items in the order their products were first added (the original's
//!   order; a product removed and added again goes to the end).
//!
//! Events are `ItemAdded` and `ItemRemoved`; every 5 events the proxy also stores a
//! `CartSnapshot`. The journal's persistence id is `shopping-cart`.

use cloudstate::{CommandContext, EventSourced, EventSourcedEntity, Failure, Reply};

/// The cart's protobuf types, its service's trait and calls, its gRPC client, and the
/// descriptor set reported at discovery.
pub mod proto {
    cloudstate::include_protos!("com.example.shoppingcart");

    /// What the journal stores: the events and the snapshot.
    pub mod persistence {
        cloudstate::include_protos!("com.example.shoppingcart.persistence");
    }

    /// `shoppingcart.proto`, `domain.proto` and all their imports, options intact.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

use proto::persistence;

/// The journal's persistence id.
pub const PERSISTENCE_ID: &str = "shopping-cart";

cloudstate::events! {
    /// What happens to a cart.
    pub enum CartEvent {
        /// A quantity of a product was added.
        ItemAdded(persistence::ItemAdded),
        /// A product was removed.
        ItemRemoved(persistence::ItemRemoved),
    }
}

/// A user's cart: its line items, in the order their products were first added.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShoppingCart {
    items: Vec<persistence::LineItem>,
}

impl ShoppingCart {
    /// The cart's line items, in the order their products were first added.
    pub fn items(&self) -> &[persistence::LineItem] {
        &self.items
    }
}

impl proto::ShoppingCart for ShoppingCart {
    fn add_item(
        &self,
        item: proto::AddLineItem,
        ctx: &mut CommandContext<Self>,
    ) -> Result<Reply<()>, Failure> {
        if item.quantity <= 0 {
            return Err(Failure::invalid_argument(format!(
                "Cannot add negative quantity of item {}",
                item.product_id
            )));
        }
        ctx.emit(persistence::ItemAdded {
            item: Some(persistence::LineItem {
                product_id: item.product_id,
                name: item.name,
                quantity: item.quantity,
            }),
        });
        Ok(().into())
    }

    fn remove_item(
        &self,
        item: proto::RemoveLineItem,
        ctx: &mut CommandContext<Self>,
    ) -> Result<Reply<()>, Failure> {
        if !self
            .items
            .iter()
            .any(|line| line.product_id == item.product_id)
        {
            return Err(Failure::not_found(format!(
                "Cannot remove item {} because it is not in the cart.",
                item.product_id
            )));
        }
        ctx.emit(persistence::ItemRemoved {
            product_id: item.product_id,
        });
        Ok(().into())
    }

    fn get_cart(
        &self,
        _: proto::GetShoppingCart,
        _: &mut CommandContext<Self>,
    ) -> Result<Reply<proto::Cart>, Failure> {
        let items = self
            .items
            .iter()
            .map(|line| proto::LineItem {
                product_id: line.product_id.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
            })
            .collect();
        Ok(proto::Cart { items }.into())
    }
}

impl EventSourcedEntity for ShoppingCart {
    type Event = CartEvent;
    type Snapshot = persistence::CartSnapshot;

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded(added) => {
                let Some(item) = &added.item else { return };
                match self
                    .items
                    .iter_mut()
                    .find(|line| line.product_id == item.product_id)
                {
                    Some(line) => line.quantity = line.quantity.saturating_add(item.quantity),
                    None => self.items.push(item.clone()),
                }
            }
            CartEvent::ItemRemoved(removed) => self
                .items
                .retain(|line| line.product_id != removed.product_id),
        }
    }

    fn snapshot(&self) -> Option<persistence::CartSnapshot> {
        Some(persistence::CartSnapshot {
            items: self.items.clone(),
        })
    }

    fn from_snapshot(snapshot: persistence::CartSnapshot) -> Option<Self> {
        Some(ShoppingCart {
            items: snapshot.items,
        })
    }
}

/// The cart's registration: persistence id `shopping-cart`, a snapshot every 5 events.
pub fn entity() -> EventSourced<ShoppingCart> {
    proto::shopping_cart::entity()
        .persistence_id(PERSISTENCE_ID)
        .snapshot_every(5)
}

/// The user function serving the cart, ready to
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

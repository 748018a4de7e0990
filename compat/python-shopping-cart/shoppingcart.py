"""Event-sourced shopping cart written against the original PyPI `cloudstate` 0.1.1 support library.

A compatibility fixture for the Rust proxy: it only uses the library's public API, the way a user
of that library would.

Environment:
  HOST, PORT   where to listen (read by the library itself; default 127.0.0.1:8080)
  SHOPPING_CART_SNAPSHOT_EVERY
               snapshot every N events; default 0 = never. Keep it at 0: cloudstate 0.1.1 crashes
               when the proxy later hands a snapshot back in init (see compat/README.md).

Needs shoppingcart_pb2.py and domain_pb2.py next to it; scripts/install-compat.sh generates them
from proto/ (with a protoc whose output runs on protobuf 3.20.x).
"""

import os
import sys

# The library logs with pprint/print; make that visible line by line when stdout is a pipe.
sys.stdout.reconfigure(line_buffering=True)

from google.protobuf.empty_pb2 import Empty

from cloudstate.cloudstate import CloudState
from cloudstate.event_sourced_context import EventSourcedCommandContext
from cloudstate.event_sourced_entity import EventSourcedEntity

import domain_pb2
import shoppingcart_pb2


class CartState:
    """The cart: product id -> persistence LineItem, in insertion order."""

    def __init__(self, entity_id):
        self.entity_id = entity_id
        self.items = {}


def init_state(entity_id):
    return CartState(entity_id)


entity = EventSourcedEntity(
    shoppingcart_pb2.DESCRIPTOR.services_by_name["ShoppingCart"],
    [shoppingcart_pb2.DESCRIPTOR, domain_pb2.DESCRIPTOR],
    init_state,
    persistence_id="shopping-cart",
    snapshot_every=int(os.environ.get("SHOPPING_CART_SNAPSHOT_EVERY", "0")),
)


# The library injects handler arguments by their type annotations, so every parameter needs one.

@entity.command_handler("AddItem")
def add_item(state: CartState, command: shoppingcart_pb2.AddLineItem, context: EventSourcedCommandContext):
    if command.quantity <= 0:
        context.fail("Cannot add negative quantity of item {}".format(command.product_id))
        return Empty()
    context.emit(domain_pb2.ItemAdded(item=domain_pb2.LineItem(
        product_id=command.product_id, name=command.name, quantity=command.quantity)))
    return Empty()


@entity.command_handler("RemoveItem")
def remove_item(state: CartState, command: shoppingcart_pb2.RemoveLineItem, context: EventSourcedCommandContext):
    if command.product_id not in state.items:
        context.fail("Cannot remove item {} because it is not in the cart.".format(command.product_id))
        return Empty()
    context.emit(domain_pb2.ItemRemoved(product_id=command.product_id))
    return Empty()


@entity.command_handler("GetCart")
def get_cart(state: CartState, command: shoppingcart_pb2.GetShoppingCart):
    return shoppingcart_pb2.Cart(items=[
        shoppingcart_pb2.LineItem(product_id=i.product_id, name=i.name, quantity=i.quantity)
        for i in state.items.values()
    ])


@entity.event_handler(domain_pb2.ItemAdded)
def item_added(state: CartState, event: domain_pb2.ItemAdded):
    existing = state.items.get(event.item.product_id)
    if existing is not None:
        existing.quantity += event.item.quantity
    else:
        item = domain_pb2.LineItem()
        item.CopyFrom(event.item)
        state.items[item.product_id] = item
    return state


@entity.event_handler(domain_pb2.ItemRemoved)
def item_removed(state: CartState, event: domain_pb2.ItemRemoved):
    state.items.pop(event.product_id, None)
    return state


@entity.snapshot()
def snapshot(state: CartState):
    return domain_pb2.CartSnapshot(items=list(state.items.values()))


@entity.snapshot_handler()
def handle_snapshot(state: CartState, snapshot: domain_pb2.CartSnapshot):
    state.items = {}
    for i in snapshot.items:
        item = domain_pb2.LineItem()
        item.CopyFrom(i)
        state.items[item.product_id] = item
    return state


if __name__ == "__main__":
    CloudState().register_event_sourced_entity(entity).start()

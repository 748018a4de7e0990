// Event-sourced shopping cart written against the original npm `cloudstate` 0.0.3 support library.
//
// It is a compatibility fixture for the Rust proxy: it must behave exactly like a user function
// somebody wrote with that library, so it only uses the library's public API.
//
// Environment:
//   PORT  port to listen on (default 8080)
//   HOST  address to bind (default 127.0.0.1; the library itself would bind 0.0.0.0:8080)
//   DEBUG=cloudstate*  turns on the library's own debug logging (npm `debug` module)
//
// Files it needs next to it (made by scripts/install-compat.sh): node_modules/ and
// user-function.desc (the descriptor set compiled from proto/ by the library's compile-descriptor).

"use strict";

const path = require("path");

// The library reads package.json (service name/version) and checks for "user-function.desc"
// relative to the working directory, so run from this directory whatever the caller's cwd is.
process.chdir(__dirname);

const EventSourced = require("cloudstate").EventSourced;

const entity = new EventSourced(
  ["shoppingcart.proto", "domain.proto"],
  "com.example.shoppingcart.ShoppingCart",
  {
    persistenceId: "shopping-cart",
    snapshotEvery: 5,
    includeDirs: [path.join(__dirname, "proto")]
  }
);

const CartSnapshot = entity.lookupType("com.example.shoppingcart.persistence.CartSnapshot");
const ItemAdded = entity.lookupType("com.example.shoppingcart.persistence.ItemAdded");
const ItemRemoved = entity.lookupType("com.example.shoppingcart.persistence.ItemRemoved");

// The entity state is the snapshot message itself: the library serializes the state after every
// event and sends that as the snapshot, and feeds a received snapshot straight back in as state.
entity.setInitial(userId => CartSnapshot.create({ items: [] }));

function addItem(cmd, cart, ctx) {
  if (cmd.quantity <= 0) {
    ctx.fail("Cannot add negative quantity of item " + cmd.productId);
    return;
  }
  ctx.emit(ItemAdded.create({
    item: { productId: cmd.productId, name: cmd.name, quantity: cmd.quantity }
  }));
  return {};
}

function removeItem(cmd, cart, ctx) {
  const present = cart.items.some(item => item.productId === cmd.productId);
  if (!present) {
    ctx.fail("Cannot remove item " + cmd.productId + " because it is not in the cart.");
    return;
  }
  ctx.emit(ItemRemoved.create({ productId: cmd.productId }));
  return {};
}

function getCart(cmd, cart) {
  return {
    items: cart.items.map(item => ({ productId: item.productId, name: item.name, quantity: item.quantity }))
  };
}

function itemAdded(event, cart) {
  const existing = cart.items.find(item => item.productId === event.item.productId);
  if (existing) {
    existing.quantity = existing.quantity + event.item.quantity;
  } else {
    cart.items.push(event.item);
  }
  return cart;
}

function itemRemoved(event, cart) {
  cart.items = cart.items.filter(item => item.productId !== event.productId);
  return cart;
}

entity.setBehavior(cart => ({
  commandHandlers: {
    AddItem: addItem,
    RemoveItem: removeItem,
    GetCart: getCart
  },
  eventHandlers: {
    ItemAdded: itemAdded,
    ItemRemoved: itemRemoved
  }
}));

const bindAddress = process.env.HOST || "127.0.0.1";
const bindPort = parseInt(process.env.PORT || "8080", 10);
const boundPort = entity.start({ bindAddress, bindPort });
// The library's grpc server.bind() returns 0 instead of throwing when it cannot listen (port in
// use, bad address), and the process would stay up serving nothing: fail loudly instead.
if (!boundPort) {
  console.error("Could not listen on " + bindAddress + ":" + bindPort);
  process.exit(1);
}

function stop(signal) {
  console.log("Received " + signal + ", shutting down");
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

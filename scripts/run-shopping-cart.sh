#!/usr/bin/env bash
# Runs the shopping cart: the Rust user function and the Cloudstate proxy in front of it, with
# state in the embedded on-disk store (./cloudstate-data). Ctrl-C stops both; state survives.
#
#   scripts/run-shopping-cart.sh             proxy on :9000, user function on :8080
#   HTTP_PORT=9100 USER_FUNCTION_PORT=8180 scripts/run-shopping-cart.sh
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HTTP_PORT="${HTTP_PORT:-9000}"
USER_FUNCTION_PORT="${USER_FUNCTION_PORT:-8080}"
STORE="${CLOUDSTATE_STORE:-embedded:./cloudstate-data}"

echo "== building (the first build takes a few minutes)" >&2
cargo build --quiet -p cloudstate-proxy -p shopping-cart
bin=target/debug

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

HOST=127.0.0.1 PORT="$USER_FUNCTION_PORT" "$bin/shopping-cart" &
pids+=($!)
"$bin/cloudstate-proxy" --http-port "$HTTP_PORT" --user-function-port "$USER_FUNCTION_PORT" --store "$STORE" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$HTTP_PORT/ready" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTP_PORT/ready" >/dev/null || { echo "the proxy did not become ready" >&2; exit 1; }

cat <<EOF

The shopping cart is running: gRPC service com.example.shoppingcart.ShoppingCart on 127.0.0.1:$HTTP_PORT
(state in ${STORE#embedded:}). Call it with the bundled client:

  target/debug/cart --target http://127.0.0.1:$HTTP_PORT add alice apple 2
  target/debug/cart --target http://127.0.0.1:$HTTP_PORT get alice
  target/debug/cart --target http://127.0.0.1:$HTTP_PORT remove alice apple

with curl, over HTTP/JSON (the routes are the google.api.http rules of shoppingcart.proto):

  curl -d '{"productId":"pear","name":"Pear","quantity":3}' 127.0.0.1:$HTTP_PORT/cart/alice/items/add
  curl 127.0.0.1:$HTTP_PORT/carts/alice
  curl -X POST 127.0.0.1:$HTTP_PORT/cart/alice/items/pear/remove

or with grpcurl, if you have it (the proxy serves gRPC reflection):

  grpcurl -plaintext -d '{"user_id":"alice","product_id":"apple","name":"Apple","quantity":2}' \\
    127.0.0.1:$HTTP_PORT com.example.shoppingcart.ShoppingCart/AddItem

Ctrl-C stops both processes.
EOF
wait -n "${pids[@]}"

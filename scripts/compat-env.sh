# Source this (bash/sh) to point at the compat user functions installed by scripts/install-compat.sh
# without running the installer:   . scripts/compat-env.sh
# Sets:
#   CLOUDSTATE_COMPAT_DIR          install dir (default $HOME/.cache/cloudstate-compat)
#   CLOUDSTATE_COMPAT_NODE_CART    start with:  PORT=<port> node "$CLOUDSTATE_COMPAT_NODE_CART"
#   CLOUDSTATE_COMPAT_PYTHON       the venv's python
#   CLOUDSTATE_COMPAT_PYTHON_CART  start with:  PORT=<port> "$CLOUDSTATE_COMPAT_PYTHON" "$CLOUDSTATE_COMPAT_PYTHON_CART"
# CLOUDSTATE_COMPAT_READY=1 if the install looks complete, else 0 (then run scripts/install-compat.sh).
CLOUDSTATE_COMPAT_DIR="${CLOUDSTATE_COMPAT_DIR:-$HOME/.cache/cloudstate-compat}"
CLOUDSTATE_COMPAT_NODE_CART="$CLOUDSTATE_COMPAT_DIR/node-shopping-cart/index.js"
CLOUDSTATE_COMPAT_PYTHON="$CLOUDSTATE_COMPAT_DIR/python/bin/python"
CLOUDSTATE_COMPAT_PYTHON_CART="$CLOUDSTATE_COMPAT_DIR/python-shopping-cart/shoppingcart.py"
if [ -f "$CLOUDSTATE_COMPAT_DIR/.installed-key" ] && [ -f "$CLOUDSTATE_COMPAT_DIR/node-shopping-cart/user-function.desc" ] \
   && [ -x "$CLOUDSTATE_COMPAT_PYTHON" ] && [ -f "$CLOUDSTATE_COMPAT_DIR/python-shopping-cart/shoppingcart_pb2.py" ]; then
  CLOUDSTATE_COMPAT_READY=1
else
  CLOUDSTATE_COMPAT_READY=0
fi
export CLOUDSTATE_COMPAT_DIR CLOUDSTATE_COMPAT_NODE_CART CLOUDSTATE_COMPAT_PYTHON CLOUDSTATE_COMPAT_PYTHON_CART CLOUDSTATE_COMPAT_READY

# Images of the proxy, the operator and the shopping cart example, from one build stage.
#
#   docker build --target proxy         -t cloudstate/cloudstate-proxy:0.1.0 .
#   docker build --target operator      -t cloudstate/cloudstate-operator:0.1.0 .
#   docker build --target shopping-cart -t cloudstate/shopping-cart:0.1.0 .
#
# No container engine runs on the machines this project is developed on: this file has not
# been built here (see docs/kubernetes.md).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The .proto files are compiled by protox (pure Rust): no protoc is needed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p cloudstate-proxy -p cloudstate-operator -p shopping-cart \
    && mkdir -p /out \
    && cp target/release/cloudstate-proxy target/release/cloudstate-operator \
          target/release/shopping-cart /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home cloudstate
USER 10001

FROM runtime AS proxy
COPY --from=build /out/cloudstate-proxy /usr/local/bin/cloudstate-proxy
EXPOSE 9000 9100
ENTRYPOINT ["/usr/local/bin/cloudstate-proxy"]

FROM runtime AS operator
COPY --from=build /out/cloudstate-operator /usr/local/bin/cloudstate-operator
ENTRYPOINT ["/usr/local/bin/cloudstate-operator"]
CMD ["run"]

FROM runtime AS shopping-cart
COPY --from=build /out/shopping-cart /usr/local/bin/shopping-cart
ENV HOST=127.0.0.1 PORT=8080
ENTRYPOINT ["/usr/local/bin/shopping-cart"]

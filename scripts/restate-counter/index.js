// A keyed counter on Restate's TypeScript SDK: the peer of the proxy's shopping cart in
// scripts/bench-vs-restate.sh. `Counter` is a virtual object (one instance per key, calls to a
// key run one at a time, state kept by the Restate server):
//   POST /Counter/<key>/add   body: a number   -> the new count
//   POST /Counter/<key>/get                    -> the count
//
// Environment: PORT (default 9080), HOST (default 127.0.0.1). Register it with the Restate
// server's admin API: POST /deployments {"uri": "http://HOST:PORT"}.

"use strict";

// The SDK uses Promise.withResolvers (Node 22); these machines have Node 20. Defined here with
// its standard meaning when missing.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const http2 = require("http2");
const restate = require("@restatedev/restate-sdk");

const counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx, delta) => {
      const count = ((await ctx.get("count")) ?? 0) + delta;
      ctx.set("count", count);
      return count;
    },
    get: restate.handlers.object.shared(async ctx => (await ctx.get("count")) ?? 0)
  }
});

const host = process.env.HOST || "127.0.0.1";
const port = parseInt(process.env.PORT || "9080", 10);
const server = http2.createServer(restate.createEndpointHandler({ services: [counter] }));
server.on("error", error => {
  console.error("Could not listen on " + host + ":" + port + ": " + error.message);
  process.exit(1);
});
server.listen(port, host, () => console.log("Restate counter listening on " + host + ":" + port));

function stop(signal) {
  console.log("Received " + signal + ", shutting down");
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

// What one Get costs a Node process through the TypeScript client alone, without Express: the
// express-session row's explanation in docs/benchmarks.md. Two transports, interleaved rounds:
// the client's default (`createSessionTransport`: unary calls straight on node:http2) and
// connect-node's `createGrpcTransport` (what the client used before). Run from the app directory
// bench/adapters/run.py installs:
//
//   cp bench/adapters/node/client-cost.mjs $CARGO_TARGET_DIR/bench-adapters/node-app/
//   SESSION_SERVICE_BIN=$CARGO_TARGET_DIR/release/valkey-sessions bash clients/with-service.sh \
//     node $CARGO_TARGET_DIR/bench-adapters/node-app/client-cost.mjs
import { SessionClient } from "valkey-sessions-client";
import { createGrpcTransport } from "@connectrpc/connect-node";

const addr = process.env.SESSION_SERVICE_ADDR;
const clients = {
  "default transport": new SessionClient(addr, { timeoutMs: 2000 }),
  "connect-node createGrpcTransport": new SessionClient(addr, {
    timeoutMs: 2000,
    transport: createGrpcTransport({ baseUrl: `http://${addr}` }),
  }),
};
const s = await clients["default transport"].create({ user: new TextEncoder().encode('{"name":"bench"}') });
const total = 4000, inFlight = 16;
for (const round of [0, 1, 2, 3]) {
  const names = Object.keys(clients);
  for (const name of round % 2 ? names.reverse() : names) {
    const client = clients[name];
    const t0 = performance.now(), cpu0 = process.cpuUsage();
    let n = 0;
    await Promise.all([...Array(inFlight)].map(async () => {
      while (n < total) {
        n++;
        await client.get(s.id, { strong: true });
      }
    }));
    const ms = performance.now() - t0, cpu = process.cpuUsage(cpu0);
    console.log(`${round === 0 ? "warm-up" : `round ${round}`}, ${name}: ${((total / ms) * 1000).toFixed(0)} Gets/s, ${((cpu.user + cpu.system) / total).toFixed(0)} µs CPU per Get (${inFlight} in flight)`);
  }
}
process.exit(0);
